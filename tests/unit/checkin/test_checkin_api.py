"""The HTTP behaviour of the check-in service against an in-memory store."""

from __future__ import annotations

import io
import json

import pytest
from conftest import agent_authorization
from falcon import testing
from fleet_checkin.store import StoreUnavailable

CHECKIN = "/agent/checkin"
AGENT_0001 = {"Authorization": agent_authorization("tenant-001", "agent-0001")}


def valid_body(**fields):
    return {"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 1, **fields}


def checkin(client, **fields):
    return client.simulate_post(CHECKIN, json=valid_body(**fields))


def assert_stamped(result):
    assert result.headers["X-Fleet-Node"] == "web-agent-01"
    assert result.headers["X-Fleet-Version"] == "1.2.3"


# -- POST /agent/checkin ----------------------------------------------------


def test_checkin_records_and_answers_after_the_store_committed(client, store):
    result = checkin(client, seq=7, status="busy")

    assert result.status_code == 200
    assert result.json == {
        "ok": True,
        "seq": 7,
        "duplicate": False,
        "commands": [],
        "node": "web-agent-01",
        "version": "1.2.3",
    }
    assert store.checkins[(1, "tenant-001", "agent-0001", 7)] == {"status": "busy", "served_by": "web-agent-01"}
    assert_stamped(result)


def test_checkin_status_defaults_to_ok(client, store):
    checkin(client)
    assert store.agents[(1, "tenant-001", "agent-0001")]["status"] == "ok"


def test_checkin_goes_to_the_tenants_shard(client, store):
    assert checkin(client, tenant="tenant-003").status_code == 200
    assert store.calls == [("checkin", 2)]


def test_duplicate_seq_is_acknowledged_without_a_second_record(client, store):
    first = checkin(client, seq=3)
    again = checkin(client, seq=3)

    assert first.json["duplicate"] is False
    assert again.status_code == 200
    assert again.json["duplicate"] is True
    assert again.json["seq"] == 3
    assert len(store.checkins) == 1


def test_pending_commands_are_handed_out_once_and_again_on_a_retry(client, store):
    checkin(client, seq=1)
    queued = client.simulate_post("/api/tenants/tenant-001/agents/agent-0001/commands", json={"command": "reboot"})
    assert queued.status_code == 201

    delivered = checkin(client, seq=2)
    retried = checkin(client, seq=2)
    later = checkin(client, seq=3)

    assert [c["command"] for c in delivered.json["commands"]] == ["reboot"]
    # The retry may be the only answer the agent ever sees: same commands.
    assert retried.json["commands"] == delivered.json["commands"]
    assert later.json["commands"] == []


def test_a_checkin_for_an_unknown_tenant_is_refused_like_a_forged_one(client, store):
    # No key verifies it; the answer does not tell a caller which tenants exist.
    result = checkin(client, tenant="tenant-999")

    assert result.status_code == 403
    assert result.json == {
        "ok": False, "error": "the credential is not the one of agent 'agent-0001' of tenant 'tenant-999'"}
    assert store.calls == []
    assert_stamped(result)


def test_the_user_api_names_an_unknown_tenant_to_an_admin(client, store):
    result = client.simulate_get("/api/tenants/tenant-999/agents")

    assert result.status_code == 404
    assert "tenant-999" in result.json["error"]
    assert store.calls == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonp", "multipart/form-data; boundary=x"])
def test_a_body_not_sent_as_json_is_415(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    result = client.simulate_post(CHECKIN, body=json.dumps(valid_body()), headers=headers)
    assert result.status_code == 415
    assert result.json["ok"] is False
    assert "Content-Type: application/json" in result.json["error"]


def test_a_json_content_type_with_parameters_is_accepted(client):
    result = client.simulate_post(CHECKIN, body=json.dumps(valid_body()),
                                  headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert result.status_code == 200, result.text


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'{"seq": NaN}', b"\xff\xfe"])
def test_malformed_json_is_400(client, body):
    result = client.simulate_post(CHECKIN, body=body, headers={"Content-Type": "application/json"})

    assert result.status_code == 400
    assert result.json["error"].startswith("malformed JSON")
    assert_stamped(result)


@pytest.mark.parametrize(
    ("fields", "field", "shown"),
    [
        ({"agent_id": None}, "agent_id", "None"),
        ({"agent_id": "has space"}, "agent_id", "'has space'"),
        ({"tenant": 12}, "tenant", "12"),
        ({"seq": "5"}, "seq", "'5'"),
        ({"seq": -1}, "seq", "-1"),
        ({"seq": 1.5}, "seq", "1.5"),
        ({"seq": True}, "seq", "True"),
        ({"status": ""}, "status", "''"),
        ({"status": ["ok"]}, "status", "['ok']"),
    ],
)
def test_wrong_field_is_400_naming_field_and_value(client, store, fields, field, shown):
    result = checkin(client, **fields)

    assert result.status_code == 400
    assert result.json["field"] == field
    assert f"'{field}'" in result.json["error"]
    assert shown in result.json["error"]
    assert store.calls == []


@pytest.mark.parametrize("field", ["agent_id", "tenant", "seq"])
def test_missing_field_is_400_naming_it(client, field):
    body = {"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 1}
    del body[field]

    result = client.simulate_post(CHECKIN, json=body)

    assert result.status_code == 400
    assert result.json["error"] == f"missing required field '{field}'"


def test_body_over_the_limit_is_413(make_client, store):
    client = make_client(max_body_bytes=1024)
    body = {"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 1, "padding": "x" * 1024}

    result = client.simulate_post(CHECKIN, json=body)

    assert result.status_code == 413
    assert "1024 bytes" in result.json["error"]
    assert store.calls == []


def test_declared_length_over_the_limit_is_refused_without_reading(make_client, store):
    app = make_client(max_body_bytes=1024).app
    env = testing.create_environ(method="POST", path=CHECKIN, headers={"Content-Length": "1000000", **AGENT_0001})
    env["wsgi.input"] = io.BytesIO(b'{"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 4}')
    start_response = testing.StartResponseMock()

    b"".join(app(env, start_response))

    assert start_response.status.startswith("413")
    assert env["wsgi.input"].tell() == 0


def test_body_at_the_limit_is_accepted(make_client):
    client = make_client(max_body_bytes=1024)
    body = json.dumps({"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 1}).encode()
    body = body[:-1] + b" " * (1024 - len(body)) + b"}"
    assert len(body) == 1024

    assert client.simulate_post(CHECKIN, body=body, headers={"Content-Type": "application/json"}).status_code == 200


def test_chunked_body_without_content_length_is_bounded_too(make_client, store):
    app = make_client(max_body_bytes=1024).app
    env = testing.create_environ(method="POST", path=CHECKIN,
                                 headers={"Content-Type": "application/json", **AGENT_0001})
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = io.BytesIO(b'{"padding": "' + b"x" * 4096 + b'"}')
    start_response = testing.StartResponseMock()

    b"".join(app(env, start_response))

    assert start_response.status.startswith("413")
    assert store.calls == []


def test_chunked_body_within_the_limit_is_read(client, store):
    env = testing.create_environ(method="POST", path=CHECKIN,
                                 headers={"Content-Type": "application/json", **AGENT_0001})
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = io.BytesIO(b'{"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 4}')
    start_response = testing.StartResponseMock()

    body = json.loads(b"".join(client.app(env, start_response)))

    assert start_response.status.startswith("200")
    assert body["seq"] == 4


def test_database_down_is_a_quick_503_with_the_reason(client, store):
    store.down.add(1)

    result = checkin(client)

    assert result.status_code == 503
    assert result.headers["Retry-After"] == "1"
    assert "shard 1 unavailable" in result.json["error"]
    assert_stamped(result)


def test_unexpected_error_is_a_json_500_without_traceback(client, store, caplog):
    def explode(*args):
        raise RuntimeError("secret internals at line 42")

    store.checkin = explode

    result = checkin(client)

    assert result.status_code == 500
    assert result.json == {"ok": False, "error": "internal error; see the service log"}
    assert "secret internals" not in result.text
    assert "Traceback" not in result.text
    assert "secret internals" in caplog.text  # ...but the operator gets it
    assert_stamped(result)


def test_unknown_path_and_wrong_method_are_json_and_stamped(client):
    missing = client.simulate_get("/nope")
    wrong = client.simulate_get(CHECKIN)

    assert missing.status_code == 404
    assert missing.json["ok"] is False
    assert wrong.status_code == 405
    assert wrong.json["ok"] is False
    assert_stamped(missing)
    assert_stamped(wrong)


# -- GET /api/tenants/{tenant}/agents ---------------------------------------


@pytest.fixture
def five_agents(client, store):
    for number in range(1, 6):
        checkin(client, agent_id=f"agent-{number:04d}")
    # Two agents went offline (the scheduler's job in production).
    store.agents[(1, "tenant-001", "agent-0002")]["online"] = False
    store.agents[(1, "tenant-001", "agent-0004")]["online"] = False
    store.calls.clear()


def test_agents_are_listed_in_keyset_pages(client, five_agents):
    first = client.simulate_get("/api/tenants/tenant-001/agents", params={"limit": "2"})
    second = client.simulate_get(
        "/api/tenants/tenant-001/agents", params={"limit": "2", "after": first.json["next_after"]}
    )
    last = client.simulate_get(
        "/api/tenants/tenant-001/agents", params={"limit": "2", "after": second.json["next_after"]}
    )

    pages = [[a["agent_id"] for a in page.json["agents"]] for page in (first, second, last)]
    assert pages == [["agent-0001", "agent-0002"], ["agent-0003", "agent-0004"], ["agent-0005"]]
    assert first.json["next_after"] == "agent-0002"
    assert last.json["next_after"] is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [("online", ["agent-0001", "agent-0003", "agent-0005"]), ("offline", ["agent-0002", "agent-0004"])],
)
def test_agents_are_filtered_by_state(client, five_agents, state, expected):
    result = client.simulate_get("/api/tenants/tenant-001/agents", params={"state": state})

    assert result.status_code == 200
    assert [a["agent_id"] for a in result.json["agents"]] == expected
    assert result.json["state"] == state


def test_agent_page_size_is_capped(make_client, store):
    client = make_client(page_limit_max=3, page_limit_default=2)

    assert client.simulate_get("/api/tenants/tenant-001/agents").json["limit"] == 2
    assert client.simulate_get("/api/tenants/tenant-001/agents", params={"limit": "100000"}).json["limit"] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "asleep"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "bad id"}, "after"),
    ],
)
def test_agent_listing_rejects_bad_query(client, params, field):
    result = client.simulate_get("/api/tenants/tenant-001/agents", params=params)

    assert result.status_code == 400
    assert result.json["field"] == field
    assert params[field] in result.json["error"]


def test_agent_listing_of_unknown_tenant_is_404(client):
    result = client.simulate_get("/api/tenants/tenant-404/agents")

    assert result.status_code == 404
    assert "tenant-404" in result.json["error"]


# -- POST /api/tenants/{tenant}/agents/{agent_id}/commands ------------------


def test_command_for_a_known_agent_is_201(client, store):
    checkin(client, agent_id="agent-0009", tenant="tenant-003")

    result = client.simulate_post(
        "/api/tenants/tenant-003/agents/agent-0009/commands", json={"command": "run-script 7"}
    )

    assert result.status_code == 201
    assert result.json == {
        "ok": True,
        "id": 1,
        "tenant": "tenant-003",
        "agent_id": "agent-0009",
        "command": "run-script 7",
    }
    assert store.calls[-1] == ("add_command", 2)


def test_command_for_an_agent_that_never_checked_in_is_404(client):
    result = client.simulate_post("/api/tenants/tenant-001/agents/ghost-01/commands", json={"command": "reboot"})

    assert result.status_code == 404
    assert "ghost-01" in result.json["error"]


@pytest.mark.parametrize(
    ("body", "shown"), [({}, "missing required field 'command'"), ({"command": "  "}, "'  '"), ({"command": 5}, "5")]
)
def test_command_body_is_validated(client, body, shown):
    result = client.simulate_post("/api/tenants/tenant-001/agents/agent-0001/commands", json=body)

    assert result.status_code == 400
    assert result.json["field"] == "command"
    assert shown in result.json["error"]


def test_command_for_unknown_tenant_is_404(client):
    result = client.simulate_post("/api/tenants/nobody/agents/agent-0001/commands", json={"command": "reboot"})

    assert result.status_code == 404
    assert "'nobody'" in result.json["error"]


# -- GET /api/stats ---------------------------------------------------------


def test_stats_counts_per_shard(client, five_agents):
    result = client.simulate_get("/api/stats")

    assert result.status_code == 200
    shard_one, shard_two = result.json["shards"]
    assert shard_one == {
        "shard": 1,
        "database": "fleet_shard_1",
        "tenants": ["tenant-001", "tenant-002"],
        "available": True,
        "agents_total": 5,
        "agents_online": 3,
        "commands_pending": 0,
    }
    assert shard_two["agents_total"] == 0


def test_stats_with_a_shard_down_is_503_but_reports_the_rest(client, store):
    store.down.add(2)

    result = client.simulate_get("/api/stats")

    assert result.status_code == 503
    assert result.json["ok"] is False
    assert [s["available"] for s in result.json["shards"]] == [True, False]
    assert "shard 2 unavailable" in result.json["shards"][1]["error"]


# -- /healthz and /readyz ---------------------------------------------------


def test_ready_when_every_routed_shard_answers(client, store):
    result = client.simulate_get("/readyz")

    assert result.status_code == 200
    assert result.json["ready"] is True
    assert sorted(store.calls) == [("ping", 1), ("ping", 2)]
    assert_stamped(result)


def test_drain_file_makes_readyz_503_but_not_healthz(client, drained_paths):
    drained_paths.add("/run/fleet-checkin/drain")

    ready = client.simulate_get("/readyz")
    health = client.simulate_get("/healthz")

    assert ready.status_code == 503
    assert ready.json["reasons"] == ["draining: /run/fleet-checkin/drain exists"]
    assert health.status_code == 200


def test_unreachable_shard_makes_readyz_503_naming_it(client, store):
    store.down.add(2)

    result = client.simulate_get("/readyz")

    assert result.status_code == 503
    assert result.headers["Retry-After"] == "1"
    assert len(result.json["reasons"]) == 1
    assert result.json["reasons"][0].startswith("shard 2 unavailable")


def test_only_shards_that_tenants_route_to_are_checked(make_client, config_data, store):
    config_data["shards"]["3"] = dict(config_data["shards"]["1"], database="fleet_shard_3")
    store.down.add(3)

    result = make_client().simulate_get("/readyz")

    assert result.status_code == 200
    assert ("ping", 3) not in store.calls


def test_startup_delay_holds_readiness_but_not_health(make_client, clock):
    client = make_client(startup_delay_seconds=30)

    clock.now += 29.5
    starting = client.simulate_get("/readyz")
    alive = client.simulate_get("/healthz")
    clock.now += 0.5
    ready = client.simulate_get("/readyz")

    assert starting.status_code == 503
    assert starting.json["reasons"] == ["starting: ready in 0.5s"]
    assert alive.status_code == 200
    assert alive.json["uptime_seconds"] == 29.5
    assert ready.status_code == 200


def test_healthz_ignores_the_database(client, store):
    store.down.update({1, 2})

    result = client.simulate_get("/healthz")

    assert result.status_code == 200
    assert result.json == {"ok": True, "node": "web-agent-01", "version": "1.2.3", "uptime_seconds": 0.0}
    assert store.calls == []
    assert_stamped(result)


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/readyz", 503)])
def test_head_probes_answer_without_body(client, drained_paths, path, status):
    drained_paths.add("/run/fleet-checkin/drain")

    result = client.simulate_head(path)

    assert result.status_code == status
    assert result.content == b""
    assert_stamped(result)


def test_an_outage_tells_the_client_which_shard_but_not_the_drivers_reason(client, store):
    def unavailable(*args):
        raise StoreUnavailable(1, "cannot connect to 172.28.5.10:3306: (2003) Can't connect to server")

    store.list_agents = unavailable
    store.ping = unavailable
    store.shard_stats = unavailable

    for path in ("/api/tenants/tenant-001/agents", "/api/stats", "/readyz"):
        result = client.simulate_get(path)
        assert result.status_code == 503, path
        assert "shard 1 unavailable; try again later" in result.text, path
        assert "172.28.5.10" not in result.text and "2003" not in result.text, (path, result.text)
