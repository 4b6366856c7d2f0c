"""Devices on the bare client of ``bench/rawws.py`` (``load.py --raw-devices``).

For the hot user (W4: one user, 1,000 devices, tens of thousands of frames a second) the
general-purpose WebSocket client would make the generator the limit; this one parses each
frame once and does the same bookkeeping as ``Run.read_device``: arrival time by mutation id,
revision order, exactly once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rawws import RawSocket, open_socket

__all__ = ["open_raw_device"]


async def open_raw_device(run: Any, host: str, port: int, u: int, d: int, token: str) -> RawSocket:
    """Connect, authenticate, subscribe, wait for ``synced``; then count every change."""
    synced = asyncio.get_running_loop().create_future()
    state = {"revision": -1, "live": False}
    counters, arrivals, user_of = run.counters, run.arrivals, run.user_of
    devices, prefix = run.plan.devices, run.mid_prefix
    cut = len(prefix)
    perf = time.perf_counter

    def on_frame(frame: dict[str, Any]) -> None:
        now = perf()
        kind = frame.get("type")
        if not state["live"]:
            if kind in ("snapshot", "change"):
                state["revision"] = int(frame["revision"])
            elif kind == "synced":
                state["live"] = True
                if not synced.done():
                    synced.set_result(None)
            elif kind == "error" and not synced.done():
                synced.set_exception(RuntimeError(f"device u{u} d{d} refused: {frame}"))
            return
        if kind != "change":
            if kind == "error":
                counters.ws_errors += 1
                run.note(f"device u{u} d{d} got an error frame: {frame}")
            return
        rev = frame["revision"]
        if rev != state["revision"] + 1:
            counters.gaps += 1
            run.note(f"device u{u} d{d}: revision {rev} after {state['revision']}")
        state["revision"] = rev
        mid = frame["mutation_id"]
        if not mid.startswith(prefix):
            counters.foreign += 1
            return
        job = int(mid[cut:])
        if user_of[job] != u:
            counters.misrouted += 1
            return
        slot = job * devices + d
        if arrivals[slot]:
            counters.duplicates += 1
        else:
            arrivals[slot] = now
            counters.received += 1
            if run.dispatched:
                run.check_done()

    sock = await open_socket(host, port, on_frame, 20.0)
    sock.send({"type": "auth", "token": token, "client_id": f"{run.plan.prefix}-u{u}-d{d}"})
    sock.send({"type": "subscribe", "since": None})
    await asyncio.wait_for(synced, 20)

    def closed(_: asyncio.Future[None]) -> None:
        if not run.closing:
            counters.ws_closed += 1

    sock.closed.add_done_callback(closed)
    return sock
