"""Who gets in: agent tokens on check-ins, user API keys with a tenant scope, admin-only details."""

from __future__ import annotations

import io
import json

import pytest
from conftest import ADMIN_API_KEY, AGENT_KEY_SECRET, TENANT1_API_KEY, agent_authorization
from fleet_checkin import credentials, enrol
from fleet_checkin.config import ConfigError, parse_config
from fleet_checkin.credentials import CredentialError, agent_token, bearer, verify_agent_token

CHECKIN = "/agent/checkin"


def body(agent_id="agent-0001", tenant="tenant-001", seq=1):
    return {"agent_id": agent_id, "tenant": tenant, "seq": seq}


def as_user(key):
    return {"Authorization": f"Bearer {key}"} if key else {"Authorization": None}


# -- agents -------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Basic YWdlbnQ6c2VjcmV0", "Bearer", "Bearer a b"])
def test_a_checkin_without_a_bearer_credential_is_401_before_the_body_is_read(client, store, header):
    result = client.simulate_post(CHECKIN, json=body(), headers={"Authorization": header})

    assert result.status_code == 401
    assert result.json["ok"] is False
    assert "Authorization: Bearer" in result.json["error"]
    assert result.headers["WWW-Authenticate"] == 'Bearer realm="fleet-agents"'
    assert store.calls == []


def test_an_agent_checks_in_with_its_own_token(client, store):
    own = {"Authorization": agent_authorization("tenant-001", "agent-0001")}
    result = client.simulate_post(CHECKIN, json=body(), headers=own)

    assert result.status_code == 200
    assert store.calls == [("checkin", 1)]


@pytest.mark.parametrize("claimed", [
    body(agent_id="agent-0002"),                     # another agent of the same tenant
    body(tenant="tenant-002"),                       # the same id in another tenant
    body(agent_id="agent-0001 ", tenant="tenant-001"),  # not even a valid id: 400 comes first
])
def test_a_token_works_only_for_the_agent_it_was_issued_to(client, store, claimed):
    stolen = {"Authorization": agent_authorization("tenant-001", "agent-0001")}

    result = client.simulate_post(CHECKIN, json=claimed, headers=stolen)

    assert result.status_code in (400, 403)
    if result.status_code == 403:
        assert result.json["error"] == (
            f"the credential is not the one of agent {claimed['agent_id']!r} of tenant {claimed['tenant']!r}")
    assert store.calls == []


def test_forged_checkins_cannot_collect_another_agents_commands(client, store):
    client.simulate_post(CHECKIN, json=body(seq=1))
    queued = client.simulate_post("/api/tenants/tenant-001/agents/agent-0001/commands", json={"command": "reboot"})
    assert queued.status_code == 201
    forged = {"Authorization": agent_authorization("tenant-001", "agent-0002")}

    stolen = client.simulate_post(CHECKIN, json=body(seq=2), headers=forged)
    delivered = client.simulate_post(CHECKIN, json=body(seq=2))

    assert stolen.status_code == 403
    assert [c["command"] for c in delivered.json["commands"]] == ["reboot"]


@pytest.mark.parametrize("mangle", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character of the MAC
    lambda token: "k9" + token[2:],                                   # a key id the tenant does not have
    lambda token: token.replace(".", ""),                            # no key id
    lambda token: token + "A",                                       # too long
])
def test_a_tampered_token_is_refused(client, store, mangle):
    token = agent_authorization("tenant-001", "agent-0001").removeprefix("Bearer ")

    result = client.simulate_post(CHECKIN, json=body(), headers={"Authorization": "Bearer " + mangle(token)})

    assert result.status_code == 403
    assert store.calls == []


def test_a_rotated_key_accepts_old_and_new_tokens_and_issues_new_ones(make_client, config_data, store):
    new_secret = "the-new-key-of-tenant-001-rotated-in"
    config_data["agent_keys"]["tenant-001"].insert(0, {"id": "k2", "secret": new_secret})
    client = make_client()
    config = parse_config(config_data)

    old = client.simulate_post(CHECKIN, json=body(seq=1))  # the test client sends k1 tokens
    new = client.simulate_post(CHECKIN, json=body(seq=2), headers={
        "Authorization": "Bearer " + agent_token("k2", new_secret, "tenant-001", "agent-0001")})
    issued = credentials.issue_agent_tokens(config.agent_keys["tenant-001"], "tenant-001", ["agent-0001"])

    assert (old.status_code, new.status_code) == (200, 200)
    assert issued[0][1].startswith("k2.")


def test_master_keys_give_each_tenant_its_own_key_and_listed_keys_win(make_client, config_data):
    master = "the-fleet-master-agent-key-for-all-tenants"
    config_data["agent_master_keys"] = [{"id": "m1", "secret": master}]
    del config_data["agent_keys"]["tenant-002"], config_data["agent_keys"]["tenant-003"]
    config = parse_config(config_data)
    client = make_client()
    derived2 = dict(credentials.tenant_keys("tenant-002", (), [("m1", master)]))

    token2 = agent_token("m1", derived2["m1"], "tenant-002", "agent-0001")
    checkin2 = client.simulate_post(CHECKIN, json=body(tenant="tenant-002"),
                                    headers={"Authorization": "Bearer " + token2})

    assert config.agent_keys["tenant-001"] == (("k1", AGENT_KEY_SECRET + "1"),)
    assert config.agent_keys["tenant-002"] == (("m1", derived2["m1"]),)
    assert config.agent_keys["tenant-003"] != config.agent_keys["tenant-002"]
    assert checkin2.status_code == 200
    # A token of tenant-002 derived key does not open tenant-003.
    forged = agent_token("m1", derived2["m1"], "tenant-003", "agent-0001")
    assert client.simulate_post(CHECKIN, json=body(tenant="tenant-003"),
                                headers={"Authorization": "Bearer " + forged}).status_code == 403


def test_a_tenant_rotates_away_from_its_derived_key_without_breaking_its_agents(make_client, config_data):
    master = "the-fleet-master-agent-key-for-all-tenants"
    derived = dict(credentials.tenant_keys("tenant-002", (), [("m1", master)]))["m1"]
    old_token = "Bearer " + agent_token("m1", derived, "tenant-002", "agent-0001")
    own = "its-own-new-key-of-tenant-002-rotated-in"
    config_data["agent_master_keys"] = [{"id": "m1", "secret": master}]
    config_data["agent_keys"]["tenant-002"] = [{"id": "t2", "secret": own}, {"id": "m1", "derived": True}]
    during = make_client()
    config_data["agent_keys"]["tenant-002"] = [{"id": "t2", "secret": own}]
    after = make_client()
    new_token = "Bearer " + agent_token("t2", own, "tenant-002", "agent-0001")

    def status(client, token, seq):
        return client.simulate_post(CHECKIN, json=body(tenant="tenant-002", seq=seq),
                                    headers={"Authorization": token}).status_code

    assert parse_config(config_data).agent_keys["tenant-002"][0][0] == "t2"  # the new key issues
    assert (status(during, old_token, 1), status(during, new_token, 2)) == (200, 200)
    assert (status(after, old_token, 3), status(after, new_token, 4)) == (403, 200)


@pytest.mark.parametrize("entry", [{"id": "m9", "derived": True}, {"id": "m1", "derived": "yes"}])
def test_a_derived_key_entry_must_name_a_master_key(config_data, entry):
    config_data["agent_master_keys"] = [{"id": "m1", "secret": "the-fleet-master-agent-key-for-all-tenants"}]
    config_data["agent_keys"]["tenant-002"] = [entry]
    with pytest.raises(ConfigError, match=r"'agent_keys.tenant-002\[0\]' stands for a derived key: 'derived' must be"):
        parse_config(config_data)


def test_tokens_are_bound_to_key_tenant_and_agent():
    keys = {"k1": AGENT_KEY_SECRET}
    token = agent_token("k1", AGENT_KEY_SECRET, "acme", "agent-1")

    assert verify_agent_token(keys, token, "acme", "agent-1")
    assert not verify_agent_token(keys, token, "acme", "agent-2")
    assert not verify_agent_token(keys, token, "acme2", "agent-1")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert agent_token("k1", AGENT_KEY_SECRET, "ab", "c") != agent_token("k1", AGENT_KEY_SECRET, "a", "bc")
    assert not verify_agent_token({"k1": AGENT_KEY_SECRET + "x"}, token, "acme", "agent-1")


@pytest.mark.parametrize(("key_id", "secret", "message"), [
    ("k1", "tiny-s3cr3t", "shorter than 32 characters"),
    ("k 1", AGENT_KEY_SECRET, "must be 1-16 characters"),
])
def test_issuing_refuses_weak_or_malformed_keys_without_echoing_the_secret(key_id, secret, message):
    with pytest.raises(CredentialError, match=message) as caught:
        agent_token(key_id, secret, "acme", "agent-1")
    assert secret not in str(caught.value) or secret == AGENT_KEY_SECRET


@pytest.mark.parametrize(("header", "expected"), [
    ("Bearer abc.def", "abc.def"), ("bearer  abc.def ", "abc.def"), ("Basic abc", None), (None, None), ("Bearer", None),
])
def test_bearer_reads_only_a_bearer_credential(header, expected):
    assert bearer(header) == expected


# -- users --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/tenants/tenant-001/agents"),
    ("POST", "/api/tenants/tenant-001/agents/agent-0001/commands"),
    ("GET", "/api/stats"),
])
@pytest.mark.parametrize("key", [None, "ops-admin.not-the-secret", "nobody.unit-test-admin-secret", "no-dot-at-all"])
def test_the_user_api_without_a_valid_key_is_401(client, store, method, path, key):
    result = client.simulate_request(method, path, json={"command": "reboot"}, headers=as_user(key))

    assert result.status_code == 401
    assert result.json["ok"] is False
    assert result.headers["WWW-Authenticate"] == 'Bearer realm="fleet-api"'
    assert store.calls == []


def test_a_tenant_key_sees_its_tenant_only(client, store):
    client.simulate_post(CHECKIN, json=body(tenant="tenant-002"))
    store.calls.clear()
    mine = client.simulate_get("/api/tenants/tenant-001/agents", headers=as_user(TENANT1_API_KEY))
    theirs = client.simulate_get("/api/tenants/tenant-002/agents", headers=as_user(TENANT1_API_KEY))
    command = client.simulate_post("/api/tenants/tenant-002/agents/agent-0001/commands", json={"command": "reboot"},
                                   headers=as_user(TENANT1_API_KEY))
    stats = client.simulate_get("/api/stats", headers=as_user(TENANT1_API_KEY))

    assert mine.status_code == 200
    assert (theirs.status_code, command.status_code, stats.status_code) == (403, 403, 403)
    assert theirs.json["error"] == "API key 'acme-ops' has no access to tenant 'tenant-002'"
    assert stats.json["error"] == "API key 'acme-ops' is not an admin key"
    assert store.calls == [("list_agents", 1)]
    assert store.commands == []


def test_an_admin_key_sees_every_tenant_and_the_stats(client):
    client.simulate_post(CHECKIN, json=body(tenant="tenant-003"))

    listing = client.simulate_get("/api/tenants/tenant-003/agents", headers=as_user(ADMIN_API_KEY))
    stats = client.simulate_get("/api/stats", headers=as_user(ADMIN_API_KEY))

    assert listing.status_code == 200 and listing.json["agents"][0]["agent_id"] == "agent-0001"
    assert stats.status_code == 200


def test_an_agent_token_is_not_a_user_key(client):
    token = agent_authorization("tenant-001", "agent-0001")

    assert client.simulate_get("/api/tenants/tenant-001/agents", headers={"Authorization": token}).status_code == 401


@pytest.mark.parametrize(("key", "shows_reasons"), [(None, False), (TENANT1_API_KEY, False), (ADMIN_API_KEY, True)])
def test_readiness_reasons_are_for_admins_only(client, drained_paths, key, shows_reasons):
    drained_paths.add("/run/fleet-checkin/drain")

    result = client.simulate_get("/readyz", headers=as_user(key))

    assert result.status_code == 503
    assert ("reasons" in result.json) is shows_reasons
    assert ("drain" in result.json["error"]) is shows_reasons


def test_a_new_api_key_verifies_against_its_stored_digest(make_client, config_data):
    key, digest = credentials.new_api_key("new-ops")
    config_data["api_keys"].append({"id": "new-ops", "sha256": digest, "tenants": ["tenant-003"]})
    client = make_client()

    assert key.split(".", 1)[1] not in json.dumps(config_data)
    assert client.simulate_get("/api/tenants/tenant-003/agents", headers=as_user(key)).status_code == 200


# -- config -------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["agent_keys"].pop("tenant-002"), "tenant 'tenant-002' has no agent key: list its keys in"),
    (lambda c: c["agent_keys"].update({"tenant-002": []}), "field 'agent_keys.tenant-002' must be a non-empty list"),
    (lambda c: c.update(agent_master_keys=[{"id": "m1", "secret": "too-short-secret"}]),
     r"'agent_master_keys\[0\].secret' must be a string of at least 32 characters"),
    (lambda c: c["agent_keys"].update({"tenant-009": c["agent_keys"]["tenant-001"]}),
     "names tenant 'tenant-009', which is not in 'tenants'"),
    (lambda c: c["agent_keys"]["tenant-001"][0].update(secret="too-short-secret"),
     r"'agent_keys.tenant-001\[0\].secret' must be a string of at least 32 characters \(got 16 characters\)"),
    (lambda c: c["agent_keys"]["tenant-001"].append(dict(c["agent_keys"]["tenant-001"][0])), "repeats key id 'k1'"),
    (lambda c: c["api_keys"][0].update(sha256="not-a-digest"), r"'api_keys\[0\].sha256' must be 64 lowercase hex"),
    (lambda c: c["api_keys"][1].update(tenants=[]), r"'api_keys\[1\]' \(key 'acme-ops'\) grants nothing"),
    (lambda c: c["api_keys"][1].update(admin="yes"), r"'api_keys\[1\].admin' must be true or false"),
    (lambda c: c.pop("agent_keys"), "tenant 'tenant-001' has no agent key"),
    (lambda c: c.pop("api_keys"), "missing required field 'api_keys'"),
])
def test_config_refuses_bad_keys_naming_the_field(config_data, change, message):
    change(config_data)
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(config_data, source="/etc/fleet-checkin/config.json")
    assert "too-short-secret" not in str(caught.value)
    assert str(caught.value).startswith("/etc/fleet-checkin/config.json: ")


def test_enrolment_prints_one_verifiable_token_per_agent(tmp_path, config_data, monkeypatch, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_data))
    monkeypatch.setattr("sys.stdin", io.StringIO("agent-0001\n\nagent-0002\n"))

    assert enrol.main(["agent-tokens", str(path), "tenant-002"]) == 0

    lines = capsys.readouterr().out.split()
    keys = {"k1": AGENT_KEY_SECRET + "2"}
    assert lines[0::2] == ["agent-0001", "agent-0002"]
    pairs = zip(lines[0::2], lines[1::2], strict=True)
    assert all(verify_agent_token(keys, token, "tenant-002", agent) for agent, token in pairs)


@pytest.mark.parametrize(("tenant", "ids", "message"), [
    ("tenant-404", "agent-1\n", "tenant 'tenant-404' is not routed by"),
    ("tenant-001", "agent 1\n", "stdin line 1: agent id 'agent 1' must be 1-64 characters"),
])
def test_enrolment_refuses_unknown_tenants_and_bad_ids(tmp_path, config_data, monkeypatch, capsys, tenant, ids,
                                                       message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_data))
    monkeypatch.setattr("sys.stdin", io.StringIO(ids))

    assert enrol.main(["agent-tokens", str(path), tenant]) == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
