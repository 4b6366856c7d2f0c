"""The wire frames of /v1/realtime: every valid client frame, every way of being invalid, and the
exact text of every server frame."""

from __future__ import annotations

import json
from typing import Any

import pytest

from livesettings import protocol
from livesettings.errors import (
    BadRequest,
    LiveSettingsError,
    RateLimited,
    TooLarge,
    ValidationError,
    error_from_payload,
)
from livesettings.protocol import (
    AckFrame,
    AuthFrame,
    AuthOkFrame,
    ChangeFrame,
    ClientFrame,
    ErrorFrame,
    MembershipFrame,
    PingFrame,
    PongFrame,
    ServerFrame,
    SnapshotFrame,
    SubscribeFrame,
    SyncedFrame,
    UnsubscribeFrame,
    UpdateFrame,
    error_frame,
    parse_client_frame,
    parse_server_frame,
)


def frame(**fields: Any) -> str:
    return json.dumps(fields)


# --- valid client frames -------------------------------------------------------------------------

VALID: list[tuple[str | bytes, ClientFrame]] = [
    (frame(type="auth", token="t.k.n"), AuthFrame(token="t.k.n", client_id=None)),
    (frame(type="auth", token="tok", client_id="tab-1"), AuthFrame("tok", "tab-1")),
    (frame(type="auth", token="tok", client_id=None), AuthFrame("tok", None)),
    (frame(type="auth", token="x" * 16384, client_id="c" * 128), AuthFrame("x" * 16384, "c" * 128)),
    (frame(type="auth", token="tok", client_id="a b~!"), AuthFrame("tok", "a b~!")),
    (frame(type="subscribe"), SubscribeFrame(since=None, user_id=None)),
    (frame(type="subscribe", since=None), SubscribeFrame(None, None)),
    (frame(type="subscribe", since=0), SubscribeFrame(0, None)),
    (frame(type="subscribe", since=41, user_id="auth0|é"), SubscribeFrame(41, "auth0|é")),
    (frame(type="subscribe", since=2**63 - 1), SubscribeFrame(2**63 - 1, None)),
    (frame(type="subscribe", user_id=None), SubscribeFrame(None, None)),
    (frame(type="unsubscribe"), UnsubscribeFrame(user_id=None)),
    (frame(type="unsubscribe", user_id="u" * 128), UnsubscribeFrame("u" * 128)),
    (
        frame(type="update", mutation_id="m1", base_revision=3, patch={"theme": "dark"}),
        UpdateFrame("m1", 3, {"theme": "dark"}, None, None),
    ),
    (
        frame(type="update", mutation_id="m1", base_revision=None, patch={}, edited_at=None),
        UpdateFrame(mutation_id="m1", base_revision=None, patch={}),
    ),
    (
        frame(type="update", mutation_id="m1", patch={"a": None}),
        UpdateFrame("m1", None, {"a": None}),
    ),
    (
        frame(
            type="update",
            mutation_id="m" * 128,
            base_revision=0,
            patch={"preferences": {"x": [1, 2.5, "é"]}},
            edited_at=1_700_000_000_000,
            user_id="svc-target",
        ),
        UpdateFrame(
            "m" * 128, 0, {"preferences": {"x": [1, 2.5, "é"]}}, 1_700_000_000_000, "svc-target"
        ),
    ),
    (frame(type="ping"), PingFrame()),
    # Bytes are decoded as UTF-8; whitespace around the JSON is fine.
    (b' {"type":"ping"}\n', PingFrame()),
    ('{"type":"auth","token":"\u00e9"}'.encode(), AuthFrame("é")),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_client_frames(text: str | bytes, expected: ClientFrame) -> None:
    assert parse_client_frame(text) == expected


@pytest.mark.parametrize("expected", [f for _, f in VALID])
def test_client_frames_round_trip(expected: ClientFrame) -> None:
    assert parse_client_frame(expected.to_json()) == expected


def test_client_frame_serialisation() -> None:
    assert AuthFrame("tok").to_json() == '{"type":"auth","token":"tok"}'
    assert AuthFrame("tok", "c1").to_json() == '{"type":"auth","token":"tok","client_id":"c1"}'
    assert SubscribeFrame().to_json() == '{"type":"subscribe","since":null}'
    assert SubscribeFrame(5, "u").to_json() == '{"type":"subscribe","since":5,"user_id":"u"}'
    assert UnsubscribeFrame().to_json() == '{"type":"unsubscribe"}'
    assert UnsubscribeFrame("u").to_json() == '{"type":"unsubscribe","user_id":"u"}'
    assert UpdateFrame("m", None, {"a": "é"}).to_json() == (
        '{"type":"update","mutation_id":"m","base_revision":null,"patch":{"a":"é"}}'
    )
    assert UpdateFrame("m", 2, {}, 7, "u").to_json() == (
        '{"type":"update","mutation_id":"m","base_revision":2,"patch":{},"edited_at":7,"user_id":"u"}'
    )
    assert PingFrame().to_json() == '{"type":"ping"}'
    assert PingFrame().to_dict() == {"type": "ping"}


def test_frame_type_class_attributes() -> None:
    client = (AuthFrame, SubscribeFrame, UnsubscribeFrame, UpdateFrame, PingFrame)
    assert tuple(cls.type for cls in client) == protocol.CLIENT_FRAME_TYPES
    server = (
        AuthOkFrame,
        SnapshotFrame,
        ChangeFrame,
        SyncedFrame,
        AckFrame,
        ErrorFrame,
        PongFrame,
        MembershipFrame,
    )
    assert tuple(cls.type for cls in server) == protocol.SERVER_FRAME_TYPES


# --- invalid client frames -----------------------------------------------------------------------

M = {"mutation_id": "m1"}  # the details every update error carries once its mutation_id is valid

INVALID: list[tuple[str, str | bytes, type[LiveSettingsError], str, Any]] = [
    # (id, text, error class, code, details)
    ("not json", "{", BadRequest, "malformed_json", None),
    ("empty", "", BadRequest, "malformed_json", None),
    ("trailing garbage", '{"type":"ping"} x', BadRequest, "malformed_json", None),
    ("not utf-8", b'{"type":"auth","token":"\xff"}', BadRequest, "malformed_json", None),
    ("utf-16 bytes", '{"type":"ping"}'.encode("utf-16"), BadRequest, "malformed_json", None),
    ("NaN", '{"type":"subscribe","since":NaN}', BadRequest, "malformed_json", None),
    (
        "Infinity",
        '{"type":"update","mutation_id":"m","patch":{"a":Infinity}}',
        BadRequest,
        "malformed_json",
        None,
    ),
    (
        "-Infinity",
        '{"type":"update","mutation_id":"m","patch":{"a":-Infinity}}',
        BadRequest,
        "malformed_json",
        None,
    ),
    (
        "overflowing float",
        '{"type":"update","mutation_id":"m","patch":{"a":1e400}}',
        BadRequest,
        "malformed_json",
        None,
    ),
    (
        "huge integer literal",
        '{"type":"subscribe","since":' + "9" * 5000 + "}",
        BadRequest,
        "malformed_json",
        None,
    ),
    ("nested too deeply", "[" * 100_000, BadRequest, "malformed_json", None),
    ("array", "[]", BadRequest, "invalid_frame", None),
    ("string", '"ping"', BadRequest, "invalid_frame", None),
    ("null", "null", BadRequest, "invalid_frame", None),
    ("no type", "{}", BadRequest, "invalid_frame", {"field": "type"}),
    ("type null", '{"type":null}', BadRequest, "invalid_frame", {"field": "type"}),
    ("type number", '{"type":1}', BadRequest, "invalid_frame", {"field": "type"}),
    ("unknown type", '{"type":"pong"}', BadRequest, "unknown_frame_type", None),
    ("type wrong case", '{"type":"PING"}', BadRequest, "unknown_frame_type", None),
    # auth
    ("auth no token", frame(type="auth"), BadRequest, "invalid_frame", {"field": "token"}),
    (
        "auth token null",
        frame(type="auth", token=None),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth token empty",
        frame(type="auth", token=""),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth token number",
        frame(type="auth", token=1),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth token too long",
        frame(type="auth", token="x" * 16385),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth token too many bytes",
        frame(type="auth", token="é" * 8193),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth token lone surrogate",
        '{"type":"auth","token":"\\ud800"}',
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "auth client_id empty",
        frame(type="auth", token="t", client_id=""),
        BadRequest,
        "invalid_frame",
        {"field": "client_id"},
    ),
    (
        "auth client_id too long",
        frame(type="auth", token="t", client_id="c" * 129),
        BadRequest,
        "invalid_frame",
        {"field": "client_id"},
    ),
    (
        "auth client_id non-ascii",
        frame(type="auth", token="t", client_id="é"),
        BadRequest,
        "invalid_frame",
        {"field": "client_id"},
    ),
    (
        "auth client_id control",
        frame(type="auth", token="t", client_id="a\nb"),
        BadRequest,
        "invalid_frame",
        {"field": "client_id"},
    ),
    (
        "auth client_id number",
        frame(type="auth", token="t", client_id=7),
        BadRequest,
        "invalid_frame",
        {"field": "client_id"},
    ),
    (
        "auth extra field",
        frame(type="auth", token="t", user_id="u"),
        BadRequest,
        "invalid_frame",
        {"field": "user_id"},
    ),
    # subscribe / unsubscribe
    (
        "since negative",
        frame(type="subscribe", since=-1),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    (
        "since float",
        frame(type="subscribe", since=3.0),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    (
        "since bool",
        frame(type="subscribe", since=True),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    (
        "since string",
        frame(type="subscribe", since="3"),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    (
        "since over int64",
        frame(type="subscribe", since=2**63),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    (
        "user_id empty",
        frame(type="subscribe", user_id=""),
        BadRequest,
        "invalid_frame",
        {"field": "user_id"},
    ),
    (
        "user_id too long",
        frame(type="subscribe", user_id="u" * 129),
        BadRequest,
        "invalid_frame",
        {"field": "user_id"},
    ),
    (
        "user_id number",
        frame(type="unsubscribe", user_id=1),
        BadRequest,
        "invalid_frame",
        {"field": "user_id"},
    ),
    (
        "user_id lone surrogate",
        '{"type":"unsubscribe","user_id":"\\udc00"}',
        BadRequest,
        "invalid_frame",
        {"field": "user_id"},
    ),
    (
        "subscribe extra",
        frame(type="subscribe", since=1, token="t"),
        BadRequest,
        "invalid_frame",
        {"field": "token"},
    ),
    (
        "unsubscribe extra",
        frame(type="unsubscribe", since=1),
        BadRequest,
        "invalid_frame",
        {"field": "since"},
    ),
    ("ping extra", frame(type="ping", at=1), BadRequest, "invalid_frame", {"field": "at"}),
    (
        "several extras: first by name",
        frame(type="subscribe", zz=1, aa=2),
        BadRequest,
        "invalid_frame",
        {"field": "aa"},
    ),
    # update
    (
        "update no mutation_id",
        frame(type="update", patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update mutation_id null",
        frame(type="update", mutation_id=None, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update mutation_id empty",
        frame(type="update", mutation_id="", patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update mutation_id too long",
        frame(type="update", mutation_id="m" * 129, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update mutation_id non-ascii",
        frame(type="update", mutation_id="mé", patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update mutation_id number",
        frame(type="update", mutation_id=1, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "mutation_id"},
    ),
    (
        "update no patch",
        frame(type="update", mutation_id="m1"),
        BadRequest,
        "invalid_frame",
        {"field": "patch", **M},
    ),
    (
        "update patch null",
        frame(type="update", mutation_id="m1", patch=None),
        BadRequest,
        "invalid_frame",
        {"field": "patch", **M},
    ),
    (
        "update patch array",
        frame(type="update", mutation_id="m1", patch=[]),
        BadRequest,
        "invalid_frame",
        {"field": "patch", **M},
    ),
    (
        "update patch string",
        frame(type="update", mutation_id="m1", patch="{}"),
        BadRequest,
        "invalid_frame",
        {"field": "patch", **M},
    ),
    (
        "update patch lone surrogate",
        '{"type":"update","mutation_id":"m1","patch":{"\\ud800":1}}',
        BadRequest,
        "invalid_frame",
        {"field": "patch", **M},
    ),
    (
        "update base_revision negative",
        frame(type="update", mutation_id="m1", base_revision=-1, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "base_revision", **M},
    ),
    (
        "update base_revision float",
        frame(type="update", mutation_id="m1", base_revision=1.0, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "base_revision", **M},
    ),
    (
        "update base_revision bool",
        frame(type="update", mutation_id="m1", base_revision=False, patch={}),
        BadRequest,
        "invalid_frame",
        {"field": "base_revision", **M},
    ),
    (
        "update edited_at negative",
        frame(type="update", mutation_id="m1", patch={}, edited_at=-5),
        BadRequest,
        "invalid_frame",
        {"field": "edited_at", **M},
    ),
    (
        "update edited_at float",
        frame(type="update", mutation_id="m1", patch={}, edited_at=1.5),
        BadRequest,
        "invalid_frame",
        {"field": "edited_at", **M},
    ),
    (
        "update edited_at string",
        frame(type="update", mutation_id="m1", patch={}, edited_at="now"),
        BadRequest,
        "invalid_frame",
        {"field": "edited_at", **M},
    ),
    (
        "update user_id empty",
        frame(type="update", mutation_id="m1", patch={}, user_id=""),
        BadRequest,
        "invalid_frame",
        {"field": "user_id", **M},
    ),
    (
        "update extra client_id",
        frame(type="update", mutation_id="m1", patch={}, client_id="c"),
        BadRequest,
        "invalid_frame",
        {"field": "client_id", **M},
    ),
    (
        "update patch too large",
        frame(type="update", mutation_id="m1", patch={"preferences": {"x": "y" * 65536}}),
        TooLarge,
        "too_large",
        {"field": "patch", "size": 65560, "limit": 65536, **M},
    ),
]


@pytest.mark.parametrize(
    ("text", "cls", "code", "details"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_invalid_client_frames(
    text: str | bytes, cls: type[LiveSettingsError], code: str, details: Any
) -> None:
    with pytest.raises(LiveSettingsError) as info:
        parse_client_frame(text)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.details == details


def test_patch_limit_is_on_compact_utf8_bytes() -> None:
    # {"a":"é"} is 10 bytes compact (é is two bytes), whatever the spacing of the input.
    text = '{"type": "update", "mutation_id": "m1", "patch": {"a" :  "\\u00e9"}}'
    assert parse_client_frame(text, max_patch_bytes=10) == UpdateFrame("m1", None, {"a": "é"})
    with pytest.raises(TooLarge) as info:
        parse_client_frame(text, max_patch_bytes=9)
    assert info.value.message == "update frame: the patch is 10 bytes, over the limit of 9"
    assert info.value.details == {"field": "patch", "size": 10, "limit": 9, "mutation_id": "m1"}


def test_default_patch_limit_boundary() -> None:
    # {"preferences":{"x":"…"}} is 24 bytes around the string.
    fits = {"preferences": {"x": "y" * (65536 - 24)}}
    parsed = parse_client_frame(frame(type="update", mutation_id="m", patch=fits))
    assert parsed == UpdateFrame("m", None, fits)
    over = {"preferences": {"x": "y" * (65536 - 23)}}
    with pytest.raises(TooLarge):
        parse_client_frame(frame(type="update", mutation_id="m", patch=over))


def test_error_messages_name_the_problem() -> None:
    def message(text: str) -> str:
        with pytest.raises(BadRequest) as info:
            parse_client_frame(text)
        return info.value.message

    assert message('{"type":"jump"}') == (
        "unknown frame type 'jump'; expected one of: auth, subscribe, unsubscribe, update, ping"
    )
    assert message(frame(type="x" * 100)) == (
        f"unknown frame type '{'x' * 64}…'; expected one of: "
        "auth, subscribe, unsubscribe, update, ping"
    )
    assert message("{}") == "the frame's 'type' is missing"
    assert message('{"type":3}') == "the frame's 'type' must be a string, got 3"
    assert message("[1]") == "a frame must be a JSON object, got an array"
    assert message(frame(type="auth")) == (
        "auth frame: 'token' is required (a non-empty string of at most 16384 bytes)"
    )
    assert message(frame(type="subscribe", since=3.0)) == (
        "subscribe frame: 'since' must be an integer >= 0 or null, got the number 3.0"
    )
    assert message(frame(type="subscribe", since=True)) == (
        "subscribe frame: 'since' must be an integer >= 0 or null, got true"
    )
    assert message(frame(type="update", mutation_id="m", patch={}, edited_at=-1)) == (
        "update frame: 'edited_at' must be an integer >= 0 (milliseconds since the epoch) "
        "or null, got -1"
    )
    assert message(frame(type="update", mutation_id="", patch={})) == (
        "update frame: 'mutation_id' must be a string of 1 to 128 printable ASCII characters, "
        "got an empty string"
    )
    assert message(frame(type="update", mutation_id="m", patch=[])) == (
        "update frame: 'patch' must be a JSON object, got an array"
    )
    assert message(frame(type="ping", extra=1)) == (
        "ping frame: unknown field 'extra' (it takes no fields)"
    )
    assert message(frame(type="subscribe", nope=1)) == (
        "subscribe frame: unknown field 'nope' (allowed: since, user_id, doc)"
    )
    assert message("{") == (
        "the frame is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"
    )
    assert message("NaN") == "the frame is not valid JSON: NaN is not valid JSON"


def test_malformed_json_keeps_the_cause() -> None:
    with pytest.raises(BadRequest) as info:
        parse_client_frame("{")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    with pytest.raises(BadRequest) as info:
        parse_client_frame(b"\xc3")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    assert info.value.message == ("the frame is not valid UTF-8: unexpected end of data at byte 0")


# --- server frames -------------------------------------------------------------------------------

SERVER: list[tuple[Any, str]] = [
    (AuthOkFrame("u1", 1_700_000_900), '{"type":"auth_ok","user_id":"u1","expires_at":1700000900}'),
    (
        SnapshotFrame(4, {"theme": "dark", "language": "fr"}),
        '{"type":"snapshot","revision":4,"settings":{"theme":"dark","language":"fr"}}',
    ),
    (
        SnapshotFrame(0, {}, user_id="u2"),
        '{"type":"snapshot","revision":0,"settings":{},"user_id":"u2"}',
    ),
    (
        ChangeFrame(5, {"theme": "dark"}, "m1", "tab-1", 1_700_000_000_123),
        '{"type":"change","revision":5,"patch":{"theme":"dark"},"mutation_id":"m1",'
        '"client_id":"tab-1","committed_at":1700000000123,"conflicts":[]}',
    ),
    (
        ChangeFrame(
            6,
            {"language": "é"},
            None,
            None,
            7,
            [{"path": "/language", "yours": "é", "theirs": "en", "kept": "yours", "lost_by": "c"}],
            user_id="u3",
        ),
        '{"type":"change","revision":6,"patch":{"language":"é"},"mutation_id":null,'
        '"client_id":null,"committed_at":7,"conflicts":[{"path":"/language","yours":"é",'
        '"theirs":"en","kept":"yours","lost_by":"c"}],"user_id":"u3"}',
    ),
    (SyncedFrame(9), '{"type":"synced","revision":9}'),
    (SyncedFrame(9, "u4"), '{"type":"synced","revision":9,"user_id":"u4"}'),
    (AckFrame("m2", 10), '{"type":"ack","mutation_id":"m2","revision":10,"conflicts":[]}'),
    (
        AckFrame("m2", 10, [{"path": "/theme", "kept": "theirs"}], "u5"),
        '{"type":"ack","mutation_id":"m2","revision":10,'
        '"conflicts":[{"path":"/theme","kept":"theirs"}],"user_id":"u5"}',
    ),
    (ErrorFrame("unauthorized", "no"), '{"type":"error","code":"unauthorized","message":"no"}'),
    (
        ErrorFrame("invalid", "bad value", "m3", {"path": "/theme"}),
        '{"type":"error","code":"invalid","message":"bad value","mutation_id":"m3",'
        '"details":{"path":"/theme"}}',
    ),
    (PongFrame(), '{"type":"pong"}'),
]


@pytest.mark.parametrize(("obj", "text"), SERVER)
def test_server_frames(obj: Any, text: str) -> None:
    assert obj.to_json() == text
    assert json.loads(text) == obj.to_dict()
    assert parse_server_frame(text) == obj.to_dict()
    assert parse_server_frame(text.encode()) == obj.to_dict()


def test_server_frames_refuse_nan() -> None:
    with pytest.raises(ValueError):
        SnapshotFrame(1, {"x": float("nan")}).to_json()


def test_error_frame_from_exceptions() -> None:
    assert error_frame(BadRequest("bad", code="invalid_frame")) == (
        '{"type":"error","code":"invalid_frame","message":"bad"}'
    )
    assert json.loads(error_frame(ValidationError("no such field", path="/x"), "m9")) == {
        "type": "error",
        "code": "invalid",
        "message": "no such field",
        "mutation_id": "m9",
        "details": {"path": "/x"},
    }
    # RateLimited carries retry_after in details so the client can rebuild it.
    frame_dict = json.loads(error_frame(RateLimited("slow down", retry_after=2.5), "m4"))
    assert frame_dict == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "mutation_id": "m4",
        "details": {"retry_after": 2.5},
    }
    rebuilt = error_from_payload(frame_dict)
    assert isinstance(rebuilt, RateLimited)
    assert rebuilt.retry_after == 2.5
    assert json.loads(error_frame(RateLimited("x", retry_after=1, details={"n": 1})))[
        "details"
    ] == {"n": 1, "retry_after": 1}


def test_error_frame_names_the_refused_mutation() -> None:
    text = frame(type="update", mutation_id="m7", patch={}, edited_at="soon")
    with pytest.raises(BadRequest) as info:
        parse_client_frame(text)
    assert json.loads(error_frame(info.value)) == {
        "type": "error",
        "code": "invalid_frame",
        "message": "update frame: 'edited_at' must be an integer >= 0 "
        "(milliseconds since the epoch) or null, got a string of 4 characters",
        "mutation_id": "m7",
        "details": {"field": "edited_at", "mutation_id": "m7"},
    }
    # An explicit mutation_id wins.
    assert json.loads(error_frame(info.value, "other"))["mutation_id"] == "other"
    rebuilt = error_from_payload(json.loads(error_frame(info.value)))
    assert (rebuilt.code, rebuilt.message) == (info.value.code, info.value.message)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", "malformed_json"),
        (b"\xff", "malformed_json"),
        ('{"type":"snapshot","settings":{"a":NaN}}', "malformed_json"),
        ("[]", "invalid_frame"),
        ('{"revision":1}', "invalid_frame"),
        ('{"type":"ping"}', "unknown_frame_type"),
        ('{"type":"update"}', "unknown_frame_type"),
    ],
)
def test_parse_server_frame_refuses(text: str | bytes, code: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_server_frame(text)
    assert info.value.code == code


def test_parse_server_frame_is_light() -> None:
    # Unknown fields pass through: clients stay compatible with a newer server.
    assert parse_server_frame('{"type":"synced","revision":1,"new":true}') == {
        "type": "synced",
        "revision": 1,
        "new": True,
    }


def test_constants() -> None:
    assert (
        protocol.CLOSE_UNAUTHORIZED,
        protocol.CLOSE_RATE_LIMITED,
        protocol.CLOSE_TOO_BIG,
        protocol.CLOSE_GOING_AWAY,
        protocol.CLOSE_NORMAL,
        protocol.CLOSE_POLICY,
    ) == (4001, 4008, 1009, 1001, 1000, 1008)
    assert protocol.MAX_PATCH_BYTES == 65536
    assert protocol.MAX_FRAME_BYTES == 1048576
    assert protocol.SERVER_FRAME_TYPES == (
        "auth_ok",
        "snapshot",
        "change",
        "synced",
        "ack",
        "error",
        "pong",
        "membership",
    )


def test_exported_names() -> None:
    assert set(protocol.__all__) == {
        "CLIENT_FRAME_TYPES",
        "CLOSE_GOING_AWAY",
        "CLOSE_NORMAL",
        "CLOSE_POLICY",
        "CLOSE_RATE_LIMITED",
        "CLOSE_TOO_BIG",
        "CLOSE_UNAUTHORIZED",
        "MAX_FRAME_BYTES",
        "MAX_ID_LENGTH",
        "MAX_INT",
        "MAX_PATCH_BYTES",
        "MAX_TOKEN_BYTES",
        "SERVER_FRAME_TYPES",
        "AckFrame",
        "AuthFrame",
        "AuthOkFrame",
        "ChangeFrame",
        "ClientFrame",
        "ErrorFrame",
        "MembershipFrame",
        "PingFrame",
        "PongFrame",
        "ServerFrame",
        "SnapshotFrame",
        "SubscribeFrame",
        "SyncedFrame",
        "UnsubscribeFrame",
        "UpdateFrame",
        "error_frame",
        "parse_client_frame",
        "parse_server_frame",
    }
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


# --- typed server frames -------------------------------------------------------------------------


@pytest.mark.parametrize(("obj", "text"), SERVER)
def test_server_frames_read_back_typed(obj: Any, text: str) -> None:
    assert ServerFrame.from_json(text) == obj
    assert ServerFrame.from_json(text.encode()) == obj
    assert type(obj).from_dict(json.loads(text)) == obj


def test_typed_server_frames_are_lenient_where_a_newer_server_may_differ() -> None:
    # Unknown fields are ignored; a nullable field may be absent; defaults fill the rest.
    assert ServerFrame.from_json(
        '{"type":"change","revision":3,"patch":{},"committed_at":5,"future":"x"}'
    ) == ChangeFrame(3, {}, None, None, 5)
    assert ServerFrame.from_json('{"type":"ack","mutation_id":"m","revision":2}') == AckFrame(
        "m", 2
    )


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            '{"type":"ack","revision":1}',
            "mutation_id",
            "ack frame: 'mutation_id' is required (a string)",
        ),
        (
            '{"type":"synced","revision":true}',
            "revision",
            "synced frame: 'revision' must be an integer >= 0, got true",
        ),
        (
            '{"type":"snapshot","revision":1,"settings":[]}',
            "settings",
            "snapshot frame: 'settings' must be a JSON object, got an array",
        ),
        (
            '{"type":"ack","mutation_id":"m","revision":1,"conflicts":[1]}',
            "conflicts",
            "ack frame: 'conflicts' must be an array of objects, got an array",
        ),
        (
            '{"type":"auth_ok","user_id":"u","expires_at":-1}',
            "expires_at",
            "auth_ok frame: 'expires_at' must be an integer >= 0, got -1",
        ),
    ],
)
def test_typed_server_frames_refuse_wrong_fields(text: str, field: str, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        ServerFrame.from_json(text)
    assert (info.value.code, info.value.message) == ("invalid_frame", message)
    assert info.value.details == {"field": field}


def test_typed_server_frames_refuse_like_the_light_parse() -> None:
    for text in ("{", '{"type":"ping"}', "[]"):
        with pytest.raises(BadRequest):
            ServerFrame.from_json(text)


def test_error_frames_rebuild_the_servers_exception() -> None:
    frame = ServerFrame.from_json(error_frame(RateLimited("slow down", retry_after=2.5), "m4"))
    assert isinstance(frame, ErrorFrame)
    assert frame.mutation_id == "m4"
    error = frame.to_error()
    assert isinstance(error, RateLimited)
    assert (error.message, error.retry_after) == ("slow down", 2.5)


def test_every_frame_shares_one_base() -> None:
    for _, frame in VALID:
        assert isinstance(frame, ClientFrame)
    for frame, _ in SERVER:
        assert isinstance(frame, ServerFrame)
