"""The Phoenix frames of ``/realtime/v1/websocket``, decoded and encoded without a socket, in
both serialisations, as supabase-js (2.0.0) and realtime-py (1.0.0) write and read them."""

from __future__ import annotations

import doctest
import json

import pytest

from livesettings.errors import BadRequest
from livesettings.server.compat import phoenix
from livesettings.server.compat.phoenix import Message, Vsn


def test_vsn_defaults_to_1_and_refuses_others() -> None:
    assert phoenix.parse_vsn(None) is Vsn.V1
    assert phoenix.parse_vsn("") is Vsn.V1
    assert phoenix.parse_vsn("1.0.0") is Vsn.V1
    assert phoenix.parse_vsn("2.0.0") is Vsn.V2
    with pytest.raises(BadRequest) as refused:
        phoenix.parse_vsn("3.0.0")
    assert refused.value.code == "unsupported_vsn" and "'3.0.0'" in refused.value.message


def test_decode_2_0_0_arrays_as_supabase_js_sends_them() -> None:
    join = json.dumps(["3", "3", "realtime:prefs", "phx_join", {"config": {}, "access_token": "t"}])
    assert phoenix.decode(join, Vsn.V2) == Message(
        "realtime:prefs", "phx_join", {"config": {}, "access_token": "t"}, "3", "3"
    )
    beat = phoenix.decode('[null,"4","phoenix","heartbeat",{}]', Vsn.V2)
    assert (beat.join_ref, beat.ref, beat.topic, beat.event) == (None, "4", "phoenix", "heartbeat")
    # Bytes are UTF-8; extra elements are ignored; a null payload is an empty one.
    extra = phoenix.decode(b'["1","2","realtime:x","phx_leave",null,"more"]', Vsn.V2)
    assert extra.payload == {} and extra.event == "phx_leave"


def test_decode_1_0_0_objects_as_realtime_py_sends_them() -> None:
    text = json.dumps(
        {
            "topic": "realtime:a",
            "event": "access_token",
            "payload": {"access_token": "t"},
            "ref": "7",
            "join_ref": None,
        }
    )
    assert phoenix.decode(text, Vsn.V1) == Message(
        "realtime:a", "access_token", {"access_token": "t"}, "7", None
    )
    # Integer refs (some clients) are kept as they came, to be echoed verbatim.
    assert phoenix.decode('{"topic":"phoenix","event":"heartbeat","ref":5}', Vsn.V1).ref == 5


@pytest.mark.parametrize(
    ("text", "vsn", "why"),
    [
        ("not json", Vsn.V2, "not JSON"),
        ("[1,2,3]", Vsn.V2, "[join_ref, ref, topic, event, payload]"),
        ('{"topic":"a","event":"b"}', Vsn.V2, "[join_ref, ref, topic, event, payload]"),
        ('["1","1","a","b",{}]', Vsn.V1, "{topic, event, payload, ref}"),
        ('[null,"1","","phx_join",{}]', Vsn.V2, "topic"),
        ('[null,"1","a",7,{}]', Vsn.V2, "event"),
        ('[null,"1","a","b",[1]]', Vsn.V2, "payload must be an object"),
        ('[null,{"x":1},"a","b",{}]', Vsn.V2, "ref must be"),
        ('[null,"1","a","b",{"n":NaN}]', Vsn.V2, "not JSON"),
        (b"\xff\xfe", Vsn.V2, "not JSON"),
    ],
)
def test_malformed_frames_are_refused_saying_why(text: str | bytes, vsn: Vsn, why: str) -> None:
    with pytest.raises(BadRequest) as refused:
        phoenix.decode(text, vsn)
    assert refused.value.code == "malformed_message"
    assert why in refused.value.message


def test_encode_2_0_0_is_an_array_and_1_0_0_an_object_without_join_ref() -> None:
    reply = phoenix.ok_reply("realtime:p", "3", "3", {"postgres_changes": []})
    assert json.loads(phoenix.encode(reply, Vsn.V2)) == [
        "3",
        "3",
        "realtime:p",
        "phx_reply",
        {"status": "ok", "response": {"postgres_changes": []}},
    ]
    assert json.loads(phoenix.encode(reply, Vsn.V1)) == {
        "topic": "realtime:p",
        "event": "phx_reply",
        "payload": {"status": "ok", "response": {"postgres_changes": []}},
        "ref": "3",
    }
    # Non-ASCII stays as it is; NaN is never written.
    assert "thème" in phoenix.encode(Message("realtime:é", "x", {"k": "thème"}), Vsn.V2)
    with pytest.raises(ValueError):
        phoenix.encode(Message("t", "x", {"n": float("nan")}), Vsn.V2)


def test_the_servers_replies_and_notices() -> None:
    assert phoenix.heartbeat_reply("9") == Message(
        "phoenix", "phx_reply", {"status": "ok", "response": {}}, "9", None
    )
    asked = Message("realtime:nope", "access_token", {}, "4", "2")
    assert phoenix.unmatched_topic(asked) == Message(
        "realtime:nope",
        "phx_reply",
        {"status": "error", "response": {"reason": "unmatched topic"}},
        "4",
        None,
    )
    assert phoenix.error_reply("realtime:a", "1", "1", "why") == Message(
        "realtime:a", "phx_reply", {"status": "error", "response": {"reason": "why"}}, "1", "1"
    )
    assert phoenix.close_message("realtime:a", "5") == Message(
        "realtime:a", "phx_close", {}, "5", "5"
    )
    notice = phoenix.system_message(
        "realtime:prefs", "5", extension="postgres_changes", status="ok", message="Subscribed"
    )
    assert notice == Message(
        "realtime:prefs",
        "system",
        {
            "extension": "postgres_changes",
            "status": "ok",
            "message": "Subscribed",
            "channel": "prefs",
        },
        None,
        "5",
    )
    assert phoenix.sub_topic("realtime:room:1") == "room:1" and phoenix.sub_topic("x") == "x"


def _broadcast_push(join_ref: str, ref: str, topic: str, event: str, meta: str = "") -> bytes:
    # realtime-js serializer.ts, _encodeUserBroadcastPush with JSON encoding (1).
    head = bytes([3, len(join_ref), len(ref), len(topic), len(event), len(meta), 1])
    return head + (join_ref + ref + topic + event + meta).encode() + b'{"x":1}'


def test_binary_broadcast_pushes_are_read_for_their_header() -> None:
    frame = phoenix.decode_binary(_broadcast_push("1", "22", "realtime:room", "cursor"))
    assert frame == Message(
        "realtime:room", "broadcast", {"type": "broadcast", "event": "cursor"}, "22", "1"
    )
    for bad in (b"", bytes([4, 0, 0, 0, 0, 0, 1]), _broadcast_push("1", "2", "t", "e")[:9]):
        with pytest.raises(BadRequest):
            phoenix.decode_binary(bad)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(phoenix).failed == 0
