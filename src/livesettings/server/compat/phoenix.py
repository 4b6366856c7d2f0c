"""Phoenix channel frames, as Supabase Realtime speaks them: decode, encode, the server's replies.

No I/O here: the socket adapter (:mod:`.realtime`) feeds in the text of each frame and sends
the text that comes out.

Two serialisations, chosen by the ``vsn`` query parameter of the handshake:

- ``2.0.0`` (supabase-js's default): a JSON array ``[join_ref, ref, topic, event, payload]``;
- ``1.0.0`` (no ``vsn``; realtime-py): a JSON object. Clients send ``{topic, event, payload,
  ref, join_ref}``; the server answers ``{topic, event, payload, ref}``, without ``join_ref``,
  as Phoenix's ``V1.JSONSerializer`` does.

With 2.0.0, supabase-js sends a channel's ``broadcast`` as a binary frame (kind 3, "user
broadcast push"); :func:`decode_binary` reads its header so the server can answer it. The
server itself never sends a binary frame.

The replies mirror Phoenix's server (``Phoenix.Socket`` / ``Phoenix.Channel.Server``):

- a join is answered ``phx_reply`` with both ``ref`` and ``join_ref`` set to the join's ref;
- a heartbeat (topic ``phoenix``) gets ``{"status": "ok", "response": {}}``;
- a frame to a topic the socket has not joined gets ``{"status": "error", "response":
  {"reason": "unmatched topic"}}``;
- a leave gets its reply, then ``phx_close`` (``ref`` = ``join_ref`` = the channel's join ref);
- Realtime's own notices are ``system`` events ``{extension, status, message, channel}``.

>>> frame = decode('["1","1","realtime:prefs","phx_join",{}]', Vsn.V2)
>>> frame.topic, frame.event, frame.ref, frame.join_ref
('realtime:prefs', 'phx_join', '1', '1')
>>> encode(heartbeat_reply("7"), Vsn.V2)
'[null,"7","phoenix","phx_reply",{"status":"ok","response":{}}]'
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final

from ...errors import BadRequest
from ...strict_json import loads

__all__ = [
    "CHANNEL_PREFIX",
    "HEARTBEAT_TOPIC",
    "Event",
    "Message",
    "Ref",
    "Vsn",
    "close_message",
    "decode",
    "decode_binary",
    "encode",
    "error_reply",
    "heartbeat_reply",
    "ok_reply",
    "parse_vsn",
    "reply",
    "sub_topic",
    "system_message",
    "unmatched_topic",
]

CHANNEL_PREFIX: Final = "realtime:"
"""Every Realtime channel topic starts with this (supabase-js adds it to the channel's name)."""

HEARTBEAT_TOPIC: Final = "phoenix"
"""The socket-level topic of heartbeats."""

Ref = str | int | None
"""A message reference as the client sent it (phoenix.js sends strings): echoed verbatim."""

_MAX_REF_CHARS: Final = 256
_MAX_TOPIC_CHARS: Final = 512
_MAX_EVENT_CHARS: Final = 256
_USER_BROADCAST_PUSH: Final = 3  # realtime-js serializer.ts: KINDS.userBroadcastPush


class Vsn(enum.Enum):
    """The serialisation of a socket, from its handshake's ``vsn`` parameter."""

    V1 = "1.0.0"
    V2 = "2.0.0"


class Event(enum.StrEnum):
    """The events the protocol itself defines (Phoenix's ``phx_*``, Realtime's own)."""

    JOIN = "phx_join"
    LEAVE = "phx_leave"
    REPLY = "phx_reply"
    CLOSE = "phx_close"
    ERROR = "phx_error"
    HEARTBEAT = "heartbeat"
    ACCESS_TOKEN = "access_token"
    SYSTEM = "system"
    POSTGRES_CHANGES = "postgres_changes"
    BROADCAST = "broadcast"
    PRESENCE = "presence"


@dataclass(frozen=True, slots=True)
class Message:
    """One Phoenix message, whichever way it travels."""

    topic: str
    event: str
    payload: dict[str, Any] = field(default_factory=dict)
    ref: Ref = None
    join_ref: Ref = None


def parse_vsn(value: str | None) -> Vsn:
    """The serialisation named by a handshake's ``vsn`` (none: ``1.0.0``, as Phoenix assumes).

    ``BadRequest`` for any other version.
    """
    if value is None or value == "":
        return Vsn.V1
    for vsn in Vsn:
        if vsn.value == value:
            return vsn
    raise BadRequest(
        f"unsupported vsn {value[:20]!r}: this server speaks 1.0.0 and 2.0.0",
        code="unsupported_vsn",
    )


def _malformed(why: str) -> BadRequest:
    return BadRequest(f"malformed Phoenix message: {why}", code="malformed_message")


def _ref(value: Any, name: str) -> Ref:
    if value is None:
        return None
    if type(value) is int or (isinstance(value, str) and len(value) <= _MAX_REF_CHARS):
        return value
    raise _malformed(f"{name} must be a string or null")


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _malformed(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def decode(text: str | bytes, vsn: Vsn) -> Message:
    """The message in one text frame; ``BadRequest`` (``malformed_message``) saying why not.

    The payload must be a JSON object (Phoenix's own messages always carry one; a bare value
    is refused here rather than surprise the code that reads it).
    """
    try:
        raw = loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed("not JSON") from exc
    if vsn is Vsn.V2:
        if not isinstance(raw, list) or len(raw) < 5:
            raise _malformed("a 2.0.0 message is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = raw[:5]
    else:
        if not isinstance(raw, dict):
            raise _malformed("a 1.0.0 message is {topic, event, payload, ref}")
        join_ref, ref = raw.get("join_ref"), raw.get("ref")
        topic, event, payload = raw.get("topic"), raw.get("event"), raw.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise _malformed("payload must be an object")
    return Message(
        _text(topic, "topic", _MAX_TOPIC_CHARS),
        _text(event, "event", _MAX_EVENT_CHARS),
        payload,
        _ref(ref, "ref"),
        _ref(join_ref, "join_ref"),
    )


def decode_binary(data: bytes) -> Message:
    """The header of a binary frame: supabase-js's user broadcast push (vsn 2.0.0).

    Layout (realtime-js ``serializer.ts``): kind (3), the lengths of join_ref, ref, topic,
    user event and metadata, the payload encoding, then those strings and the payload. The
    payload is not read: the server only needs to answer it. ``BadRequest`` otherwise.
    """
    if len(data) < 7 or data[0] != _USER_BROADCAST_PUSH:
        raise _malformed("binary frames are only user broadcast pushes")
    sizes = data[1:6]
    offset = 7
    parts: list[str] = []
    for size in sizes:
        chunk = data[offset : offset + size]
        if len(chunk) != size:
            raise _malformed("a binary frame shorter than its header says")
        try:
            parts.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _malformed("a binary frame's header is not UTF-8") from exc
        offset += size
    join_ref, ref, topic, user_event, _metadata = parts
    return Message(
        _text(topic, "topic", _MAX_TOPIC_CHARS),
        Event.BROADCAST,
        {"type": "broadcast", "event": user_event},
        ref or None,
        join_ref or None,
    )


def _dumps(value: Any) -> str:
    # Compact, and refusing NaN (never JSON); key order as built.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(message: Message, vsn: Vsn) -> str:
    """The text frame of ``message`` in ``vsn`` (1.0.0 leaves ``join_ref`` out, as Phoenix)."""
    if vsn is Vsn.V2:
        return _dumps(
            [message.join_ref, message.ref, message.topic, message.event, message.payload]
        )
    return _dumps(
        {
            "topic": message.topic,
            "event": message.event,
            "payload": message.payload,
            "ref": message.ref,
        }
    )


def sub_topic(topic: str) -> str:
    """A channel topic without ``realtime:`` (what Realtime calls the channel's name)."""
    return topic[len(CHANNEL_PREFIX) :] if topic.startswith(CHANNEL_PREFIX) else topic


def reply(topic: str, ref: Ref, join_ref: Ref, status: str, response: dict[str, Any]) -> Message:
    """``phx_reply`` ``{status, response}`` to the message ``ref``."""
    return Message(topic, Event.REPLY, {"status": status, "response": response}, ref, join_ref)


def ok_reply(
    topic: str, ref: Ref, join_ref: Ref, response: dict[str, Any] | None = None
) -> Message:
    """``phx_reply`` with status ``ok``."""
    return reply(topic, ref, join_ref, "ok", response or {})


def error_reply(topic: str, ref: Ref, join_ref: Ref, reason: str) -> Message:
    """``phx_reply`` with status ``error`` and ``{"reason": …}``, as Realtime words refusals."""
    return reply(topic, ref, join_ref, "error", {"reason": reason})


def heartbeat_reply(ref: Ref) -> Message:
    """The answer to a heartbeat: ok, no join ref."""
    return ok_reply(HEARTBEAT_TOPIC, ref, None)


def unmatched_topic(message: Message) -> Message:
    """Phoenix's answer to a message for a topic this socket has not joined."""
    return error_reply(message.topic, message.ref, None, "unmatched topic")


def close_message(topic: str, join_ref: Ref) -> Message:
    """``phx_close``: the channel joined as ``join_ref`` is gone (left, replaced or shut down)."""
    return Message(topic, Event.CLOSE, {}, join_ref, join_ref)


def system_message(
    topic: str, join_ref: Ref, *, extension: str, status: str, message: str
) -> Message:
    """A Realtime ``system`` event: ``{extension, status, message, channel}``, no ref."""
    payload = {
        "extension": extension,
        "status": status,
        "message": message,
        "channel": sub_topic(topic),
    }
    return Message(topic, Event.SYSTEM, payload, None, join_ref)
