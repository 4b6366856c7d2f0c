"""A bare WebSocket client for many sockets at once (W1 idle sockets, W6 reconnect storm).

A general-purpose client object costs tens of KiB per socket in the generator; this one is an
``asyncio.Protocol`` with a byte buffer: the upgrade, masked text frames out, unmasked frames
in (text handed to a callback as parsed JSON, pings answered, a close noted). Loopback only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Callable
from typing import Any, cast

__all__ = ["RawSocket", "open_socket"]


class RawSocket(asyncio.Protocol):
    """One client WebSocket; ``on_frame(frame)`` for each JSON text frame received."""

    def __init__(self, host: str, port: int, on_frame: Callable[[dict[str, Any]], None]) -> None:
        self.host, self.port = host, port
        self.on_frame = on_frame
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET /v1/realtime HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send(self, frame: dict[str, Any]) -> None:
        self._write(0x1, json.dumps(frame, separators=(",", ":")).encode())

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[9:12])
            del buf[: end + 4]
            if status != b"101":
                self.upgraded.set_exception(RuntimeError(f"upgrade refused: {status!r}"))
                self.abort()
                return
            self.upgraded.set_result(None)
        while len(buf) >= 2:
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            if opcode == 0x1:
                self.on_frame(json.loads(payload))
            elif opcode == 0x9:
                self._write(0xA, payload)  # pong: the server closes sockets that stop answering
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_socket(
    host: str, port: int, on_frame: Callable[[dict[str, Any]], None], limit: float = 20.0
) -> RawSocket:
    """Connect and upgrade; the socket is then ready for ``send``."""
    loop = asyncio.get_running_loop()
    _, sock = await asyncio.wait_for(
        loop.create_connection(lambda: RawSocket(host, port, on_frame), host, port), limit
    )
    await asyncio.wait_for(sock.upgraded, limit)
    return sock
