"""The livesettings server: ``create_app(config)`` and the parts it is made of."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
