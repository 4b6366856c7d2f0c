"""A real server process for tests: started on a random port, stopped (or killed) for real."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

TEST_JWT_SECRET = "test-secret-for-livesettings-tests-0123456789abcdef"
# With PUBLIC_URL the line names the public URL and, in brackets, the local address.
_URL = re.compile(r"livesettings is running: open (\S+)(?: \(listening on (http://[^\s)]+)\))?")


class ServerProcess:
    """``python -m livesettings serve`` with its own data dir; ``url`` once started."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None
        self.url = ""
        self.public_url = ""  # what the server printed for users to open
        self.port = 0
        self.output: list[str] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LIVESETTINGS_DATA_DIR": str(self.data_dir),
                "LIVESETTINGS_HOST": "127.0.0.1",
                "LIVESETTINGS_PORT": str(self.port),
                "LIVESETTINGS_ARGON2_MEMORY_COST": "1024",
                "LIVESETTINGS_ARGON2_TIME_COST": "1",
                "LIVESETTINGS_JWT_SECRET": TEST_JWT_SECRET,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key, value in self.settings.items():
            env["LIVESETTINGS_" + key.upper()] = str(value)
        return env

    def start(self, timeout: float = 20.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "livesettings", "serve"],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found = threading.Event()  # the URL line arrived, or the output ended without it
        started = False
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            nonlocal started
            # The pipe is closed by stop() or kill() once the process ended; a line still
            # being read then ends the loop rather than raise in this thread.
            with contextlib.suppress(ValueError, OSError):
                for line in stdout:
                    self.output.append(line)
                    match = _URL.search(line)
                    if match and not found.is_set():
                        self.public_url = match.group(1)
                        self.url = (match.group(2) or match.group(1)).rstrip("/")
                        self.port = int(self.url.rsplit(":", 1)[1])
                        started = True
                        found.set()
            found.set()  # a server that refused to start need not be waited for

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not found.wait(timeout) or not started:
            self.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/realtime"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self._close_pipe()
        return code

    def _close_pipe(self) -> None:
        # The process has ended: its output ends too, unless a child of it holds the pipe.
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipe()

    def restart(self) -> None:
        """Start again on the same port and data dir."""
        self.start()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def log_text(self) -> str:
        return "".join(self.output)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
