"""The server in the test's own process: uvicorn on a thread (its own event loop), built from
a ``Config`` and a clock the test can move. For tests of timing that a subprocess would have
to wait out on the wall clock (token expiry, JWKS refetch intervals)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from livesettings.clock import Clock
from livesettings.config import Config
from livesettings.server.app import create_app
from livesettings.server.services import Services
from tests.support.server import TEST_JWT_SECRET


class InProcessServer:
    """``create_app`` served on 127.0.0.1 (a random port) until :meth:`stop`."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.services = Services(config, clock=clock)
        app = create_app(config, services=self.services)
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    @classmethod
    def with_settings(cls, clock: Clock, **settings: Any) -> InProcessServer:
        """Settings as ``ServerProcess`` takes them (the test JWT secret unless given)."""
        settings.setdefault("jwt_secret", TEST_JWT_SECRET)
        settings.setdefault("argon2_memory_cost", 1024)
        settings.setdefault("argon2_time_cost", 1)
        return cls(Config.load(env={}, overrides=settings), clock)

    def start(self, timeout: float = 20.0) -> InProcessServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
