"""The request rules, checked directly (the API tests cover how they surface)."""

from __future__ import annotations

import pytest
from fleet_checkin.validation import (
    MAX_SEQ,
    RequestInvalid,
    check_agent_id,
    decode_json_object,
    parse_agent_query,
    parse_checkin,
    parse_command,
)


def body(**fields):
    return {"agent_id": "agent-0001", "tenant": "tenant-001", "seq": 0, **fields}


def test_checkin_fields_are_taken_and_extras_ignored():
    checkin = parse_checkin(body(seq=MAX_SEQ, status="degraded", extra={"x": 1}))

    assert (checkin.agent_id, checkin.tenant, checkin.seq, checkin.status) == (
        "agent-0001",
        "tenant-001",
        MAX_SEQ,
        "degraded",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seq": MAX_SEQ + 1}, "seq"),
        ({"status": "s" * 33}, "status"),
        ({"agent_id": "a" * 65}, "agent_id"),
        ({"agent_id": "-leading-dash"}, "agent_id"),
        ({"agent_id": "tab\there"}, "agent_id"),
        ({"tenant": ""}, "tenant"),
    ],
)
def test_checkin_limits(fields, field):
    with pytest.raises(RequestInvalid) as caught:
        parse_checkin(body(**fields))

    assert caught.value.field == field


def test_longest_agent_id_is_accepted():
    assert parse_checkin(body(agent_id="a" * 64)).agent_id == "a" * 64
    assert check_agent_id("host.example:01@site_2") == "host.example:01@site_2"


def test_long_values_are_shortened_in_messages():
    with pytest.raises(RequestInvalid) as caught:
        parse_checkin(body(status="z" * 5000))

    assert len(str(caught.value)) < 200
    assert str(caught.value).endswith("...")


def test_json_body_must_be_one_object():
    assert decode_json_object(b'{"a": 1}') == {"a": 1}
    for raw in (b"  ", b"null", b'"text"', b"[[[[" * 5000, b'{"a": Infinity}'):
        with pytest.raises(RequestInvalid, match="malformed JSON"):
            decode_json_object(raw)


def test_command_text_limits():
    assert parse_command({"command": "c" * 1024}) == "c" * 1024
    with pytest.raises(RequestInvalid, match="'command'"):
        parse_command({"command": "c" * 1025})


def test_agent_query_defaults_caps_and_cursor():
    assert parse_agent_query({}, 100, 500) == parse_agent_query({"limit": ""}, 100, 500)
    query = parse_agent_query({"state": "offline", "limit": "9999", "after": "agent-0042"}, 100, 500)

    assert (query.state, query.limit, query.after) == ("offline", 500, "agent-0042")
    assert parse_agent_query({}, 100, 500).state is None


def test_agent_query_parameter_given_twice_is_refused():
    with pytest.raises(RequestInvalid, match="'state' must be given once"):
        parse_agent_query({"state": ["online", "offline"]}, 100, 500)


@pytest.mark.parametrize("limit", ["-1", "0", "1.5", "1e3", " 5"])
def test_agent_query_limit_must_be_positive_integer(limit):
    with pytest.raises(RequestInvalid) as caught:
        parse_agent_query({"limit": limit}, 100, 500)

    assert caught.value.field == "limit"
