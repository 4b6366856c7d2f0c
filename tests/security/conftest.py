"""Fixtures of the attack suite: identity-provider keys and a JWKS server.

Servers come from the suite-wide fixtures of ``tests/conftest.py`` (``server`` shared by a
module, ``backend`` for servers of a test's own), so every attack that touches storage runs on
SQLite and on PostgreSQL. The helpers live in ``tests/support/idp.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.idp import JwksServer, Keys, make_keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return make_keys()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer().start()
    try:
        yield server
    finally:
        server.stop()
