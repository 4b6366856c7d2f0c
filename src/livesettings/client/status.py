"""The client's status, with the same fields as the browser client's.

``connection`` is an explicit state (:class:`ConnectionState`); a :class:`Status` is an
immutable snapshot, so it can be read from any thread and compared to detect changes.
"""

from __future__ import annotations

import bisect
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from livesettings.errors import LiveSettingsError

__all__ = ["ConnectionState", "Status", "SyncRate"]


class ConnectionState(enum.Enum):
    """Where the client's connection to the server stands."""

    CONNECTING = "connecting"
    """An attempt to connect (and catch up) is under way."""
    ONLINE = "online"
    """Connected, authenticated and caught up: live changes arrive as they commit."""
    OFFLINE = "offline"
    """Not connected (server unreachable or closed); edits are queued, retries follow."""
    ERROR = "error"
    """The server refused the client (bad or expired token, forbidden): see ``Status.error``."""


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the client's status.

    ``unsaved`` counts local edits the server has not acknowledged yet (queued or in flight);
    ``last_sync_at`` is the time (ms since the epoch) of the last acknowledgement or completed
    catch-up; ``syncs_per_minute`` counts those over the trailing minute; ``error`` is the last
    error about the connection or the client as a whole (cleared when the client is back
    online), and ``error_count`` counts them all, and also the edits the server refused: such
    an edit is dropped and told to ``on_error`` listeners, but leaves ``error`` alone, as in
    the browser client.
    """

    connection: ConnectionState = ConnectionState.CONNECTING
    syncing: bool = False
    unsaved: int = 0
    last_sync_at: int | None = None
    error_count: int = 0
    syncs_per_minute: int = 0
    error: LiveSettingsError | None = None

    @property
    def online(self) -> bool:
        """Whether ``connection`` is ``ONLINE``."""
        return self.connection is ConnectionState.ONLINE


class SyncRate:
    """Counts syncs over a trailing window, on a clock passed in (seconds)."""

    def __init__(self, clock: Callable[[], float], window: float = 60.0) -> None:
        self._clock = clock
        self._window = window
        self._times: deque[float] = deque()

    def add(self) -> None:
        """Record one sync now."""
        self._times.append(self._clock())
        self._trim()

    def count(self) -> int:
        """Syncs within the window ending now (safe to call from another thread)."""
        # tuple() copies the deque in one C call, so a concurrent add() cannot break it.
        times = tuple(self._times)
        return len(times) - bisect.bisect_right(times, self._clock() - self._window)

    def _trim(self) -> None:
        horizon = self._clock() - self._window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
