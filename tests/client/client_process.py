"""A client *process* for the restart tests: ``python -m tests.client.client_process …``.

``queue URL TOKEN CACHE PATCHES_JSON`` starts a sync Client (expected to be offline), submits the
patches and exits with them still queued; ``replay URL TOKEN CACHE`` starts one and waits until
its queue is acknowledged. Each prints one JSON line describing what it saw.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from livesettings.client import Client, OfflineCache, backoff


def main(argv: list[str]) -> int:
    command, url, token, cache = argv[:4]
    with OfflineCache.open(cache) as peek:
        queued_at_start = len(peek.load_pending())
    client = Client(
        url,
        token,
        cache_path=cache,
        reconnect_delays=lambda: backoff(0.05, 2.0, 0.2),
        connect_timeout=5.0,
    )
    out: dict[str, Any] = {}
    with client:
        if command == "queue":
            patches = json.loads(argv[4])
            out["mutation_ids"] = [client.update(patch).mutation_id for patch in patches]
        elif command == "replay":
            out["queued_at_start"] = queued_at_start
            client.flush(timeout=15)
        status = client.status
        out.update(
            connection=status.connection.value,
            unsaved=status.unsaved,
            revision=client.revision,
            client_id=client.client_id,
            settings=client.get(),
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
