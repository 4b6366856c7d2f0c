"""An event stream (``GET …/events``) read on a thread, as a test's device."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx


class SseReader:
    """Reads one event stream on a thread, collecting ``(id, frame)`` pairs; ``ended`` is set
    when the server ends the stream (or it is closed)."""

    def __init__(
        self,
        base: str,
        token: str,
        *,
        path: str = "/v1/settings/events",
        last_event_id: int | None = None,
    ) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.ended = threading.Event()
        self._cond = threading.Condition()
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(10.0, read=None))
        self._stream = self._client.stream("GET", path, headers=headers)
        self.response = self._stream.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event_id: str | None = None
        try:
            for line in self.response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    with self._cond:
                        self.events.append((event_id, json.loads(line[6:])))
                        self._cond.notify_all()
                elif line == "":
                    event_id = None
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str | None, dict[str, Any]]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)

    def close(self) -> None:
        self._client.close()
