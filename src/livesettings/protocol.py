"""The WebSocket wire frames of ``/v1/realtime`` (DESIGN §5): parsing, validation, serialisation.

Pure data in, pure data out — no sockets, no asyncio. The server feeds received text into
:func:`parse_client_frame` and sends what the server frames' ``to_json()`` return; the clients do
the reverse with :meth:`ServerFrame.from_json` and the client frames' ``to_json()``. Every frame
is a frozen dataclass whose serialisation is written once, in their common base.

Client → server: ``auth``, ``subscribe``, ``unsubscribe``, ``update``, ``ping``.
Server → client: ``auth_ok``, ``snapshot``, ``change``, ``synced``, ``ack``, ``error``, ``pong``,
``membership``.

Team documents (DESIGN §11): ``subscribe``, ``unsubscribe`` and ``update`` take ``doc``
(``"team:<team_id>"``); every frame about a document other than the socket user's own carries
``doc``.

Every JSON text produced here is compact (no spaces), keeps non-ASCII characters as they are and
refuses NaN/Infinity. Validation errors are :class:`~livesettings.errors.BadRequest` with the code
``malformed_json``, ``invalid_frame`` or ``unknown_frame_type``; a patch over its limit is
:class:`~livesettings.errors.TooLarge`. Patch *content* (field names, depth, values) is checked
by ``document.py``, not here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, NoReturn, Self

from livesettings import strict_json
from livesettings.errors import (
    BadRequest,
    LiveSettingsError,
    RateLimited,
    TooLarge,
    error_from_payload,
)

__all__ = [
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
]

# WebSocket close codes (RFC 6455 §7.4 and the 4000-4999 private range).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_UNAUTHORIZED: Final = 4001
CLOSE_RATE_LIMITED: Final = 4008

MAX_PATCH_BYTES: Final = 64 * 1024
"""Default limit on an update's patch, serialised compactly as UTF-8 (DESIGN §2)."""
MAX_FRAME_BYTES: Final = 1024 * 1024
"""Default limit on one WebSocket message; the socket layer closes with CLOSE_TOO_BIG above it."""
MAX_TOKEN_BYTES: Final = 16 * 1024
MAX_ID_LENGTH: Final = 128
"""Longest ``client_id``, ``mutation_id`` and ``user_id``, in characters."""
MAX_INT: Final = 2**63 - 1
"""Largest revision or timestamp accepted: the stores keep them as signed 64-bit integers."""

CLIENT_FRAME_TYPES: Final = ("auth", "subscribe", "unsubscribe", "update", "ping")
SERVER_FRAME_TYPES: Final = (
    "auth_ok",
    "snapshot",
    "change",
    "synced",
    "ack",
    "error",
    "pong",
    "membership",
)
DOC_PREFIX: Final = "team:"
"""The only documents a frame names with ``doc``: teams' (``team:<team_id>``)."""


# --- JSON ----------------------------------------------------------------------------------------


# One shared encoder: json.dumps with non-default options builds a new encoder on every call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _loads(text: str | bytes) -> Any:
    """Decode one frame's JSON, mapping every failure to ``malformed_json``."""
    if isinstance(text, bytes | bytearray):
        try:
            # Decode explicitly: json.loads(bytes) would also guess UTF-16 and UTF-32.
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                f"the frame is not valid UTF-8: {exc.reason} at byte {exc.start}",
                code="malformed_json",
            ) from exc
    try:
        return strict_json.loads(text)
    except RecursionError as exc:
        raise BadRequest("the frame's JSON is nested too deeply", code="malformed_json") from exc
    except ValueError as exc:  # JSONDecodeError, refused constants, over-long integers
        raise BadRequest(f"the frame is not valid JSON: {exc}", code="malformed_json") from exc


def _frame_object(text: str | bytes, known: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Decode a frame and check that it is an object whose ``type`` is one of ``known``."""
    data = _loads(text)
    if not isinstance(data, dict):
        raise BadRequest(
            f"a frame must be a JSON object, got {_describe(data)}", code="invalid_frame"
        )
    kind = data.get("type")
    if not isinstance(kind, str):
        what = "is missing" if "type" not in data else f"must be a string, got {_describe(kind)}"
        raise BadRequest(
            f"the frame's 'type' {what}", code="invalid_frame", details={"field": "type"}
        )
    if kind not in known:
        raise BadRequest(
            f"unknown frame type {_clip(kind)!r}; expected one of: {', '.join(known)}",
            code="unknown_frame_type",
        )
    return data, kind


def _clip(text: str, limit: int = 64) -> str:
    # Keep attacker-chosen names from bloating error messages.
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(value: Any) -> str:
    """Name a JSON value's kind for an error message, without echoing its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) <= MAX_INT else "an integer out of range"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "an empty string" if not value else f"a string of {len(value)} characters"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- the frame base ------------------------------------------------------------------------------


_FIELD_NAMES: Final[dict[type, tuple[str, ...]]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


class _Frame:
    """One wire frame: ``type``, then the dataclass fields in their order.

    A field named in ``_omit_none`` is left out while it is None (``user_id``, unless a frame
    says otherwise: it names the document only on service sockets); every other one is always
    written (``null`` included), so each frame's text stays what DESIGN §5 shows.
    """

    __slots__ = ()
    type: ClassVar[str]
    _omit_none: ClassVar[frozenset[str]] = frozenset({"user_id", "doc"})

    def to_dict(self) -> dict[str, Any]:
        """The frame as JSON-ready data."""
        data: dict[str, Any] = {"type": self.type}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is not None or name not in self._omit_none:
                data[name] = value
        return data

    def to_json(self) -> str:
        """Compact JSON text, as it goes on the wire."""
        return _dumps(self.to_dict())


# --- client frames -------------------------------------------------------------------------------


class ClientFrame(_Frame):
    """A client → server frame; :func:`parse_client_frame` returns one of its subclasses."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AuthFrame(ClientFrame):
    """``auth``: the first frame, and later a token refresh. ``client_id`` None: server picks."""

    token: str
    client_id: str | None = None
    type: ClassVar[str] = "auth"
    _omit_none: ClassVar[frozenset[str]] = frozenset({"client_id"})


@dataclass(frozen=True, slots=True)
class SubscribeFrame(ClientFrame):
    """``subscribe``: catch up from ``since`` (None: snapshot), then receive live changes.

    ``user_id`` is for service tokens only, naming whose document to follow; ``doc`` names a
    team's document (``team:<team_id>``).
    """

    since: int | None = None
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "subscribe"


@dataclass(frozen=True, slots=True)
class UnsubscribeFrame(ClientFrame):
    """``unsubscribe``: stop the subscription (a service token's for ``user_id``)."""

    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "unsubscribe"


@dataclass(frozen=True, slots=True)
class UpdateFrame(ClientFrame):
    """``update``: one mutation — an RFC 7386 merge patch made on ``base_revision``.

    ``edited_at`` is the client's clock in ms, unclamped (the server clamps it to ``[0, now]``).
    The mutation's ``client_id`` is the socket's, from ``auth``.
    """

    mutation_id: str
    base_revision: int | None
    patch: dict[str, Any]
    edited_at: int | None = None
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "update"
    _omit_none: ClassVar[frozenset[str]] = frozenset({"edited_at", "user_id", "doc"})


@dataclass(frozen=True, slots=True)
class PingFrame(ClientFrame):
    """``ping``: the application-level keep-alive; the server answers ``pong``."""

    type: ClassVar[str] = "ping"


_MISSING: Final = object()


class _Fields:
    """Reads and checks the fields of one decoded client frame, raising ``invalid_frame``."""

    __slots__ = ("data", "details", "kind")

    def __init__(self, kind: str, data: dict[str, Any]) -> None:
        self.kind = kind
        self.data = data
        # Extra details for every error; an update's mutation_id once known, so the server can
        # tell the client which of its pending mutations was refused.
        self.details: dict[str, Any] = {}

    def fail(self, name: str, problem: str) -> NoReturn:
        raise BadRequest(
            f"{self.kind} frame: {problem}",
            code="invalid_frame",
            details={"field": name, **self.details},
        )

    def only(self, *allowed: str) -> None:
        extra = self.data.keys() - {"type", *allowed}
        if extra:
            name = min(extra)  # deterministic report when several are wrong
            hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes no fields"
            self.fail(_clip(name), f"unknown field {_clip(name)!r} ({hint})")

    def get(self, name: str, expected: str, required: bool) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING and required:
            self.fail(name, f"{name!r} is required ({expected})")
        return value

    def wrong(self, name: str, expected: str, value: Any) -> NoReturn:
        self.fail(name, f"{name!r} must be {expected}, got {_describe(value)}")

    def ident(self, name: str, *, required: bool) -> str | None:
        """A client or mutation id: 1..MAX_ID_LENGTH printable ASCII characters."""
        expected = f"a string of 1 to {MAX_ID_LENGTH} printable ASCII characters"
        if not required:
            expected += " or null"
        value = self.get(name, expected, required)
        if value is _MISSING or (value is None and not required):
            return None
        if not (
            isinstance(value, str)
            and 0 < len(value) <= MAX_ID_LENGTH
            and value.isascii()
            and value.isprintable()
        ):
            self.wrong(name, expected, value)
        return value

    def user_id(self) -> str | None:
        """An optional user id: any text of 1..MAX_ID_LENGTH characters (IdP subjects vary)."""
        expected = f"a string of 1 to {MAX_ID_LENGTH} characters or null"
        value = self.get("user_id", expected, False)
        if value is _MISSING or value is None:
            return None
        if not (isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and _encodable(value)):
            self.wrong("user_id", expected, value)
        return value

    def doc(self) -> str | None:
        """An optional team document key ``team:<team_id>`` (not with ``user_id``)."""
        expected = f"a string 'team:<team_id>' of at most {MAX_ID_LENGTH} characters or null"
        value = self.get("doc", expected, False)
        if value is _MISSING or value is None:
            return None
        if not (
            isinstance(value, str)
            and value.startswith(DOC_PREFIX)
            and len(DOC_PREFIX) < len(value) <= MAX_ID_LENGTH
            and value.isascii()
            and value.isprintable()
        ):
            self.wrong("doc", expected, value)
        if self.data.get("user_id") is not None:
            self.fail("doc", "'doc' and 'user_id' cannot both be given")
        return value

    def count(self, name: str, what: str = "") -> int | None:
        """An optional integer in ``[0, MAX_INT]`` or null; bools and floats are refused."""
        expected = f"an integer >= 0{what} or null"
        value = self.get(name, expected, False)
        if value is _MISSING or value is None:
            return None
        # type() rather than isinstance(): True is an int to Python but not to JSON.
        if type(value) is not int or not 0 <= value <= MAX_INT:
            self.wrong(name, expected, value)
        return value


def _encodable(text: str) -> bool:
    # json accepts "\ud800" escapes; a lone surrogate cannot be stored or sent on as UTF-8.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_auth(fields: _Fields) -> AuthFrame:
    fields.only("token", "client_id")
    expected = f"a non-empty string of at most {MAX_TOKEN_BYTES} bytes"
    token = fields.get("token", expected, True)
    if not (
        isinstance(token, str)
        and 0 < len(token) <= MAX_TOKEN_BYTES
        and _encodable(token)
        and (token.isascii() or len(token.encode("utf-8")) <= MAX_TOKEN_BYTES)
    ):
        fields.wrong("token", expected, token)
    return AuthFrame(token=token, client_id=fields.ident("client_id", required=False))


def _parse_subscribe(fields: _Fields) -> SubscribeFrame:
    fields.only("since", "user_id", "doc")
    return SubscribeFrame(since=fields.count("since"), user_id=fields.user_id(), doc=fields.doc())


def _parse_unsubscribe(fields: _Fields) -> UnsubscribeFrame:
    fields.only("user_id", "doc")
    return UnsubscribeFrame(user_id=fields.user_id(), doc=fields.doc())


def _parse_update(fields: _Fields, max_patch_bytes: int) -> UpdateFrame:
    # mutation_id first, so that every later error can name the refused mutation.
    mutation_id = fields.ident("mutation_id", required=True)
    assert mutation_id is not None  # required=True never returns None
    fields.details["mutation_id"] = mutation_id
    fields.only("mutation_id", "base_revision", "patch", "edited_at", "user_id", "doc")
    base_revision = fields.count("base_revision")
    patch = fields.get("patch", "a JSON object", True)
    if type(patch) is not dict:
        fields.wrong("patch", "a JSON object", patch)
    edited_at = fields.count("edited_at", " (milliseconds since the epoch)")
    user_id = fields.user_id()
    doc = fields.doc()
    # Size last: it is the only check that costs more than a glance.
    try:
        size = len(_dumps(patch).encode("utf-8"))
    except UnicodeEncodeError:
        fields.fail("patch", "'patch' holds a lone UTF-16 surrogate, which is not valid text")
    except RecursionError:
        fields.fail("patch", "'patch' is nested too deeply")
    if size > max_patch_bytes:
        raise TooLarge(
            f"update frame: the patch is {size} bytes, over the limit of {max_patch_bytes}",
            details={"field": "patch", "size": size, "limit": max_patch_bytes, **fields.details},
        )
    return UpdateFrame(
        mutation_id=mutation_id,
        base_revision=base_revision,
        patch=patch,
        edited_at=edited_at,
        user_id=user_id,
        doc=doc,
    )


def parse_client_frame(text: str | bytes, *, max_patch_bytes: int = MAX_PATCH_BYTES) -> ClientFrame:
    """Decode and validate one client → server frame.

    Raises :class:`BadRequest` (``malformed_json``, ``invalid_frame`` with
    ``details={"field": …}``, ``unknown_frame_type``) or :class:`TooLarge` for a patch whose
    compact UTF-8 serialisation exceeds ``max_patch_bytes``. Errors about an ``update`` whose
    ``mutation_id`` was valid also carry ``details["mutation_id"]``; :func:`error_frame` puts
    it on the error frame.
    """
    data, kind = _frame_object(text, CLIENT_FRAME_TYPES)
    fields = _Fields(kind, data)
    if kind == "update":
        return _parse_update(fields, max_patch_bytes)
    if kind == "subscribe":
        return _parse_subscribe(fields)
    if kind == "ping":
        fields.only()
        return PingFrame()
    if kind == "auth":
        return _parse_auth(fields)
    return _parse_unsubscribe(fields)


# --- server frames -------------------------------------------------------------------------------


def _is_count(value: Any) -> bool:
    # type() rather than isinstance(): True is an int to Python but not to JSON.
    return type(value) is int and 0 <= value <= MAX_INT


# How a server frame's field is checked, by its annotation: (accepts, what it must be).
_CHECKS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "int": (_is_count, "an integer >= 0"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "dict[str, Any]": (lambda v: type(v) is dict, "a JSON object"),
    "list[dict[str, Any]]": (
        lambda v: type(v) is list and all(type(item) is dict for item in v),
        "an array of objects",
    ),
    "Any": (lambda v: True, "any value"),
}


class ServerFrame(_Frame):
    """A server → client frame. :meth:`from_json` reads one into its typed class.

    Reading is lenient where a newer server may differ: unknown fields are ignored, and a
    field that may be null may also be absent. A field of the wrong type is ``invalid_frame``.
    """

    __slots__ = ()

    @staticmethod
    def from_json(text: str | bytes) -> ServerFrame:
        """Decode one server → client frame into its class (:class:`AckFrame`, …).

        Raises :class:`BadRequest` (``malformed_json``, ``invalid_frame`` with
        ``details={"field": …}``, ``unknown_frame_type``).
        """
        data, kind = _frame_object(text, SERVER_FRAME_TYPES)
        return _SERVER_FRAMES[kind].from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The frame of this class held by decoded JSON ``data`` (its ``type`` is not read)."""
        fields = _Fields(cls.type, dict(data))
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            accepts, expected = _CHECKS[str(spec.type)]
            defaulted = (
                spec.default is not dataclasses.MISSING
                or spec.default_factory is not dataclasses.MISSING
            )
            nullable = str(spec.type).endswith("| None")
            value = fields.get(spec.name, expected, not (defaulted or nullable))
            if value is _MISSING:
                if not defaulted:
                    values[spec.name] = None
            elif accepts(value):
                values[spec.name] = value
            else:
                fields.wrong(spec.name, expected, value)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class AuthOkFrame(ServerFrame):
    """``auth_ok``: the token was accepted; ``expires_at`` is its ``exp`` (Unix seconds)."""

    user_id: str
    expires_at: int
    type: ClassVar[str] = "auth_ok"


@dataclass(frozen=True, slots=True)
class SnapshotFrame(ServerFrame):
    """``snapshot``: the whole (masked) document at ``revision``, instead of a catch-up.

    ``user_id`` (as on every frame about one document) only on service sockets.
    """

    revision: int
    settings: dict[str, Any]
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "snapshot"


@dataclass(frozen=True, slots=True)
class ChangeFrame(ServerFrame):
    """``change``: one committed revision — the effective, masked merge patch.

    Serialise it once with :meth:`to_json` and send the same text to every socket of the user
    (service sockets need their own copy with ``user_id``).
    """

    revision: int
    patch: dict[str, Any]
    mutation_id: str | None
    client_id: str | None
    committed_at: int
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "change"


@dataclass(frozen=True, slots=True)
class SyncedFrame(ServerFrame):
    """``synced``: the catch-up is complete at ``revision``; live changes follow."""

    revision: int
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "synced"


@dataclass(frozen=True, slots=True)
class AckFrame(ServerFrame):
    """``ack``: the mutation is durable at ``revision`` (the current one if every edit lost)."""

    mutation_id: str
    revision: int
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    user_id: str | None = None
    doc: str | None = None
    type: ClassVar[str] = "ack"


@dataclass(frozen=True, slots=True)
class ErrorFrame(ServerFrame):
    """``error``: a refused frame or mutation; the connection stays usable unless closed."""

    code: str
    message: str
    mutation_id: str | None = None
    details: Any = None
    doc: str | None = None
    type: ClassVar[str] = "error"
    _omit_none: ClassVar[frozenset[str]] = frozenset({"mutation_id", "details", "doc"})

    @classmethod
    def from_exception(
        cls, exc: LiveSettingsError, mutation_id: str | None = None, doc: str | None = None
    ) -> ErrorFrame:
        """The frame reporting ``exc``; see :func:`error_frame`."""
        details = exc.details
        if mutation_id is None and isinstance(details, dict):
            found = details.get("mutation_id")
            mutation_id = found if isinstance(found, str) else None
        if isinstance(exc, RateLimited):
            # error_from_payload reads retry_after back from the details.
            base = details if isinstance(details, dict) else {}
            if "retry_after" not in base:
                details = {**base, "retry_after": exc.retry_after}
        return cls(
            code=exc.code, message=exc.message, mutation_id=mutation_id, details=details, doc=doc
        )

    def to_error(self) -> LiveSettingsError:
        """The exception this frame reports, rebuilt as the server raised it."""
        return error_from_payload(self.to_dict())


@dataclass(frozen=True, slots=True)
class PongFrame(ServerFrame):
    """``pong``: the answer to ``ping``."""

    type: ClassVar[str] = "pong"


@dataclass(frozen=True, slots=True)
class MembershipFrame(ServerFrame):
    """``membership``: the socket user's role in the team of ``doc`` changed; ``role`` is
    null when they were removed (their subscription to ``doc`` then ends)."""

    doc: str
    role: str | None
    type: ClassVar[str] = "membership"
    _omit_none: ClassVar[frozenset[str]] = frozenset()


_SERVER_FRAMES: Final[dict[str, type[ServerFrame]]] = {
    cls.type: cls
    for cls in (
        AuthOkFrame,
        SnapshotFrame,
        ChangeFrame,
        SyncedFrame,
        AckFrame,
        ErrorFrame,
        PongFrame,
        MembershipFrame,
    )
}


def error_frame(
    exc: LiveSettingsError, mutation_id: str | None = None, doc: str | None = None
) -> str:
    """The ``error`` frame text for ``exc``.

    Without an explicit ``mutation_id``, the one :func:`parse_client_frame` recorded in the
    error's details (a refused ``update``) is used. A :class:`RateLimited` error gets its
    ``retry_after`` in the details, where :func:`~livesettings.errors.error_from_payload`
    finds it.
    """
    return ErrorFrame.from_exception(exc, mutation_id, doc).to_json()


def parse_server_frame(text: str | bytes) -> dict[str, Any]:
    """Decode one server → client frame and check its ``type``; fields are not validated
    (:meth:`ServerFrame.from_json` reads it into its typed class).

    Raises :class:`BadRequest` (``malformed_json``, ``invalid_frame``, ``unknown_frame_type``).
    """
    data, _ = _frame_object(text, SERVER_FRAME_TYPES)
    return data
