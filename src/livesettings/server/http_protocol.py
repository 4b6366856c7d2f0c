"""uvicorn's HTTP/1.1 protocol with deadlines for slow clients (slowloris).

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but nothing else: a
client may open a connection and never finish its headers, or trickle a body forever. Here:

- a request's headers must be complete ``header_timeout`` seconds after the connection opened
  or after the request's first byte: 408 and close (a close alone when no request began,
  as for an idle keep-alive connection, or while an earlier response is being written);
- its body must be complete ``body_timeout`` seconds (and a second of grace) after its
  headers, else the connection closes. The app answers 408 first when it is the one waiting
  for the body (``perimeter.Edge``); this catches the bodies no one reads;
- a request line and headers over 64 KiB get 431 and a close (the parser has no bound);
- a WebSocket upgrade over ``limit_concurrency`` gets 503 like a request does (uvicorn
  counts sockets as connections but only refuses plain requests).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEADER_BYTES", "TimedHttpProtocol", "timed_protocol"]

MAX_HEADER_BYTES = 64 * 1024
_GRACE = 1.0  # the app's own 408 goes first
_PHRASES = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class TimedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with the deadlines above; see :func:`timed_protocol`."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._began = False  # a request began and its headers are not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes on an idle connection (even blank lines, which begin no request) start the
        # clock, so trickling them cannot keep a connection forever.
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(self.header_timeout, self._headers_late)
        super().data_received(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self._reply(431, "headers_too_large", f"the headers are over {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._began = True
        if self._deadline is None:
            self._arm(self.header_timeout, self._headers_late)

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes <= MAX_HEADER_BYTES:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes <= MAX_HEADER_BYTES:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_bytes > MAX_HEADER_BYTES:
            return  # answered 431 once the parser returns
        self._began = False
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.body_timeout + _GRACE, self._body_late)

    def on_body(self, body: bytes) -> None:
        if self._header_bytes <= MAX_HEADER_BYTES:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._header_bytes > MAX_HEADER_BYTES:
            return
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning("Exceeded concurrency limit: WebSocket upgrade refused.")
            self._reply(503, "over_capacity", "the server is at its connection limit")
            return
        super().handle_websocket_upgrade()

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._began and (self.cycle is None or self.cycle.response_complete):
            self._reply(
                408,
                "request_timeout",
                f"the request headers did not arrive within {self.header_timeout:g} seconds",
            )
        else:
            self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _reply(self, status: int, code: str, message: str) -> None:
        """A JSON error written straight to the connection (no request cycle is running),
        which then closes."""
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES[status])
        self.transport.write(
            head
            + b"content-type: application/json\r\n"
            + b"x-content-type-options: nosniff\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()


def timed_protocol(*, header_timeout: float, body_timeout: float) -> type[TimedHttpProtocol]:
    """The protocol class to give ``uvicorn.Config(http=…)``, with these deadlines."""
    return type(
        "TimedHttpProtocol",
        (TimedHttpProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
