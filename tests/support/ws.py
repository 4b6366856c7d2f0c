"""A small synchronous WebSocket test client speaking the livesettings protocol."""

from __future__ import annotations

import json
import uuid
from typing import Any

from websockets.sync.client import ClientConnection, connect


class WsClient:
    def __init__(
        self, url: str, *, origin: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        extra = {**({"Origin": origin} if origin else {}), **(headers or {})} or None
        self.conn: ClientConnection = connect(
            url, additional_headers=extra, open_timeout=5, max_size=4 * 1024 * 1024
        ).__enter__()
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: dict[str, Any] | str) -> None:
        self.conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self.conn.recv(timeout=timeout))
        self.frames.append(frame)
        return frame

    def recv_until(self, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Frames up to and including the first of type ``kind``."""
        got: list[dict[str, Any]] = []
        while True:
            frame = self.recv(timeout)
            got.append(frame)
            if frame["type"] == kind:
                return got

    def no_frame(self, timeout: float = 0.3) -> bool:
        try:
            frame = self.conn.recv(timeout=timeout)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame: {frame}")

    def auth(self, token: str, client_id: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "auth", "token": token}
        if client_id:
            frame["client_id"] = client_id
        self.send(frame)
        return self.recv()

    def subscribe(self, since: int | None = None, **extra: Any) -> list[dict[str, Any]]:
        self.send({"type": "subscribe", "since": since, **extra})
        return self.recv_until("synced")

    def update(
        self,
        patch: dict[str, Any],
        base: int | None = None,
        mutation_id: str | None = None,
        **extra: Any,
    ) -> str:
        mid = mutation_id or uuid.uuid4().hex
        self.send(
            {"type": "update", "mutation_id": mid, "base_revision": base, "patch": patch, **extra}
        )
        return mid

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
