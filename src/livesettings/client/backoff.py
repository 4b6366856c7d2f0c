"""The client's reconnect delays: :func:`livesettings.backoff.backoff`, re-exported here.

The generator lives in :mod:`livesettings.backoff` so that the buses use the same one.
"""

from __future__ import annotations

from ..backoff import DelayFactory, backoff

__all__ = ["DelayFactory", "backoff"]
