"""Remembered request bodies (DESIGN §3, exactly once), kept so that a dump reveals nothing.

A store remembers each mutation id with a hash of its request body, to tell a repeated
mutation (same body) from a reused id (another body). A plain hash of a body that carried an
API key would let anyone holding a database dump or backup test guesses of that key offline.
So the adapters compute :func:`body_hash` (a digest that stays in memory), and a store keeps
only an HMAC of it under a key derived from a master key, tagged with that key's id:
``"<master key id>:<hex>"``. The database never holds the master keys, so the stored value
tells nothing about the body.

Rows from before keyed hashes (a bare hex digest) still compare as they did until they age
out. A row whose master key has left the keyring cannot be checked any more: its id counts as
a repeat, which changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..crypto import Keyring
from ..errors import CryptoError

__all__ = ["BodyHasher", "body_hash"]

_INFO: Final = b"livesettings body hash v1"


def body_hash(kind: str, body: Any, *extra: Any) -> str:
    """A stable digest of a request body (kept in memory; stores keep :meth:`BodyHasher.seal`)."""
    data = json.dumps([kind, body, *extra], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


class BodyHasher:
    """Turns body digests into what a store may keep, and checks a new body against one.

    Without a keyring (a store that cannot hold secrets, so no body that reaches it carries
    one) the digest is kept as it is.
    """

    def __init__(self, keyring: Keyring | None) -> None:
        self._keyring = keyring
        self._keys: dict[str, bytes] = {}

    def seal(self, digest: str) -> str:
        """The value to store for ``digest``, keyed by the active master key."""
        if self._keyring is None:
            return digest
        key_id = self._keyring.active.id
        return f"{key_id}:{self._mac(key_id, digest)}"

    def matches(self, stored: str, digest: str) -> bool:
        """Whether a remembered body (``stored``) is the body whose digest is ``digest``."""
        key_id, sep, mac = stored.partition(":")
        if not sep:
            return hmac.compare_digest(stored, digest)
        try:
            expected = self._mac(key_id, digest)
        except CryptoError:
            return True  # the key that tagged it was retired: the id alone decides
        return hmac.compare_digest(mac, expected)

    def _mac(self, key_id: str, digest: str) -> str:
        key = self._keys.get(key_id)
        if key is None:
            if self._keyring is None:
                raise CryptoError("no master keyring", code="unknown_master_key")
            master = self._keyring.get(key_id)
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
                master.key
            )
            self._keys[key_id] = key
        return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()
