"""A stand-in server that does almost nothing, to measure the load generator itself.

It speaks just enough of the livesettings protocol for ``bench/load.py``: ``PATCH
/v1/settings`` answers 200 at once and pushes a ``change`` frame (with the request's
``Idempotency-Key`` as mutation id) to every WebSocket of the token's user; ``/v1/realtime``
takes ``auth`` and ``subscribe`` and answers ``auth_ok``, ``snapshot`` and ``synced``. Tokens
are read, not verified. No storage, no framework: raw asyncio protocols on uvloop.

``python bench/run.py --fake-server`` runs the sweep against it, which shows how far the
generator goes before *it* becomes the limit. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
import struct
import sys
import time
from typing import Any, cast

__all__ = ["main"]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _State:
    def __init__(self) -> None:
        self.sockets: dict[str, list[_Conn]] = {}
        self.revisions: dict[str, int] = {}


def _sub(token: str) -> str:
    """The ``sub`` claim of a JWT, unverified (this server trusts its only client)."""
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return str(json.loads(base64.urlsafe_b64decode(payload))["sub"])


def _frame(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", n) + data
    return bytes((0x81, 127)) + struct.pack("!Q", n) + data


class _Conn(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ws = False
        self.user: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.user is not None and self in self.state.sockets.get(self.user, []):
            self.state.sockets[self.user].remove(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            used = self._ws_frame() if self.ws else self._http_request()
            if used == 0:
                return
            del self.buf[:used]

    # -- HTTP --
    def _http_request(self) -> int:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return 0
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return 0
        assert self.transport is not None
        if headers.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(
                hashlib.sha1(headers["sec-websocket-key"].encode() + _WS_GUID).digest()
            ).decode()
            self.transport.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            self.ws = True
            return end + 4
        user = _sub(headers.get("authorization", "Bearer a.e30.b").split(" ", 1)[1])
        mid = headers.get("idempotency-key", "")
        revision = self.state.revisions.get(user, 0) + 1
        self.state.revisions[user] = revision
        body = b'{"revision":%d,"settings":{},"conflicts":[]}' % revision
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        change = _frame(
            json.dumps(
                {
                    "type": "change",
                    "revision": revision,
                    "patch": {},
                    "mutation_id": mid,
                    "client_id": "http",
                    "committed_at": int(time.time() * 1000),
                    "conflicts": [],
                }
            )
        )
        for sock in self.state.sockets.get(user, []):
            if sock.transport is not None:
                sock.transport.write(change)
        return end + 4 + length

    # -- WebSocket --
    def _ws_frame(self) -> int:
        buf = self.buf
        if len(buf) < 2:
            return 0
        opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if n == 126:
            if len(buf) < 4:
                return 0
            n, at = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return 0
            n, at = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < at + 4 + n:
            return 0
        mask = buf[at : at + 4]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at + 4 : at + 4 + n]))
        assert self.transport is not None
        if opcode == 1:
            self._ws_text(json.loads(payload))
        elif opcode == 8:
            self.transport.write(b"\x88\x02\x03\xe8")
            self.transport.close()
        elif opcode == 9:
            self.transport.write(bytes((0x8A, len(payload))) + payload)
        return at + 4 + n

    def _ws_text(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        if message.get("type") == "auth":
            self.user = _sub(message["token"])
            self.state.sockets.setdefault(self.user, []).append(self)
            self.transport.write(_frame(json.dumps({"type": "auth_ok", "user_id": self.user})))
        elif message.get("type") == "subscribe" and self.user is not None:
            revision = self.state.revisions.get(self.user, 0)
            self.transport.write(
                _frame(json.dumps({"type": "snapshot", "revision": revision, "settings": {}}))
                + _frame(json.dumps({"type": "synced", "revision": revision}))
            )


async def _serve() -> None:
    state = _State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(state), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"livesettings is running: open http://127.0.0.1:{port}/", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> int:
    """Serve until SIGTERM."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve())
    else:
        uvloop.run(_serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
