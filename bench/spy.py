"""py-spy's folded ("raw") stacks, summarised: where the server's time goes, by layer and by
the parts of one write's life. Shared by ``bench/run.py`` and ``bench/multinode.py``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["profile_lines", "summarise_profile"]


def summarise_profile(raw: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive time per function from py-spy's folded ("raw") stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()  # by frame with its file
    by_function: Counter[str] = Counter()  # by bare function name, for the key frames
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        areas[_area(frames)] += count
        for name in set(frames):
            inclusive[name] += count
        for function in {f.split(" (", 1)[0] for f in frames}:
            by_function[function] += count
    return {
        "samples": total,
        "key": [(label, by_function[name]) for label, name in _KEY_FRAMES if by_function[name]],
        "self": own.most_common(top),
        "inclusive": [(n, c) for n, c in inclusive.most_common() if not _trunk(n)][:top],
        "areas": areas.most_common(),
    }


# The parts of one write's life, by the function that contains each (inclusive time).
_KEY_FRAMES = (
    ("HTTP: parsing requests (uvicorn, httptools)", "HttpToolsProtocol.data_received"),
    ("HTTP: one request through the ASGI stack", "RequestResponseCycle.run_asgi"),
    ("HTTP: FastAPI dependency solving", "solve_dependencies"),
    ("HTTP: sync dependencies sent to a thread", "run_in_threadpool"),
    ("HTTP: the PATCH endpoint", "patch_settings"),
    ("HTTP: the response body", "_mutation_response"),
    ("auth: token verification", "TokenVerifier.verify"),
    ("writer: group commit (event loop side)", "Writer._run"),
    ("writer: commit in the SQLite thread", "SqliteStore._commit_sync"),
    ("writer: merge rule", "merge"),
    ("fan-out: hub pushing changes", "Hub._drain"),
    ("fan-out: socket sender tasks", "Session._sender"),
    ("fan-out: WebSocket frame writes (uvicorn)", "WebSocketsSansIOProtocol.send"),
    ("thread wake-ups (Condition.notify)", "Condition.notify"),
    ("executor submits", "ThreadPoolExecutor.submit"),
)


_TRUNK = (
    "<frozen runpy>",
    "click/",
    "livesettings/cli",
    "livesettings/__main__",
    "livesettings/serve.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "threading.py",
)


def _trunk(name: str) -> bool:
    """Frames under everything (start-up, the loop, thread bootstrap): no news in them."""
    return any(marker in name for marker in _TRUNK)


def _frame_name(frame: str) -> str:
    """``handle (uvicorn/protocols/http/httptools_impl.py:123)`` → without the line."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def _area(frames: list[str]) -> str:
    """Which layer the sampled (innermost) frame belongs to."""
    leaf = frames[-1]
    path = leaf.rsplit(" (", 1)[-1].rstrip(")")
    for prefix, area in (
        ("livesettings/", "livesettings"),
        ("uvicorn/", "uvicorn"),
        ("starlette/", "starlette"),
        ("fastapi/", "fastapi"),
        ("pydantic", "pydantic"),
        ("websockets/", "websockets"),
        ("jwt/", "pyjwt"),
        ("json/", "json (stdlib)"),
        ("sqlite3/", "sqlite3"),
        ("asyncio/", "asyncio"),
        ("anyio/", "anyio (thread hand-off)"),
        ("concurrent/", "threads: hand-off and wake-up"),
        ("threading", "threads: hand-off and wake-up"),
        ("queue.py", "threads: hand-off and wake-up"),
        ("logging/", "logging"),
    ):
        if path.startswith(prefix):
            return area
    if "/" in path:
        return path.split("/", 1)[0]
    return f"stdlib {path}" if path.endswith(".py") else path or "?"


def profile_lines(profile: dict[str, Any]) -> list[str]:
    if "summary" not in profile:
        return ["(py-spy produced no samples)"]
    s = profile["summary"]
    intro = (
        f"py-spy at {profile['rate']:g} writes/s over the measured window, sampling the "
        f"thread that holds the GIL at 250 Hz ({s['samples']} samples; time in C code that "
        f"releases the GIL, such as SQLite and fsync, is not in them). "
        f"`{profile['command']}`"
    )
    names = dict(_KEY_FRAMES)
    return profile_tables(s, intro, [(lb, names[lb], c) for lb, c in s.get("key", [])])


def profile_tables(s: dict[str, Any], intro: str, key: list[tuple[str, str, int]]) -> list[str]:
    """The profile's tables under ``intro``: by layer, the parts of a write's life (``key``:
    label, function, samples), the top frames by own and by inclusive time."""
    total = max(1, s["samples"])
    out = [
        intro,
        "",
        "Where the samples were, by layer (innermost frame):",
        "",
        "| layer | share |",
        "|---|---|",
    ]
    out += [f"| {name} | {c / total:.0%} |" for name, c in s["areas"][:14]]
    out += [
        "",
        "Parts of a write's life (inclusive: the function and what it calls):",
        "",
        "| part | function | share |",
        "|---|---|---|",
    ]
    out += [f"| {label} | `{fn}` | {c / total:.0%} |" for label, fn, c in key]
    out += ["", "Top frames by own time:", "", "| function | own |", "|---|---|"]
    out += [f"| `{name}` | {c / total:.1%} |" for name, c in s["self"]]
    out += ["", "Top frames by inclusive time:", "", "| function | inclusive |", "|---|---|"]
    out += [f"| `{name}` | {c / total:.0%} |" for name, c in s["inclusive"]]
    return out
