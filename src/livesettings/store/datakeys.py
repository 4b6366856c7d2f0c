"""A user's data key, got or made in the caller's transaction — one rule for every backend.

A data key is made on the user's first secret and stored wrapped by the master key; later it
is unwrapped from its row. The backends, and setup's seed adoption, only say how to read and
insert the row (:class:`KeyTable`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from ..crypto import DataKey, Keyring, WrappedKey, new_data_key, unwrap_data_key, wrap_data_key

__all__ = ["DataKeyCache", "KeyTable", "get_or_create_data_key"]

_CACHE_SIZE: Final = 4096


class KeyTable(Protocol):
    """The ``data_keys`` row of a user, in the caller's open transaction."""

    async def select_wrapped_key(self, user_id: str) -> WrappedKey | None: ...

    async def insert_wrapped_key(
        self, user_id: str, wrapped: WrappedKey, created_at: str
    ) -> None: ...


class DataKeyCache:
    """Unwrapped data keys, by the wrapped form they came from: a rotated or replaced key
    misses the cache, and a key whose insert was rolled back is simply never looked up."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._keys: OrderedDict[tuple[str, WrappedKey], DataKey] = OrderedDict()

    def get(self, user_id: str, wrapped: WrappedKey) -> DataKey | None:
        key = self._keys.get((user_id, wrapped))
        if key is not None:
            self._keys.move_to_end((user_id, wrapped))
        return key

    def put(self, user_id: str, wrapped: WrappedKey, key: DataKey) -> None:
        self._keys[(user_id, wrapped)] = key
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def forget(self, user_id: str) -> None:
        for cached in [k for k in self._keys if k[0] == user_id]:
            del self._keys[cached]

    def clear(self) -> None:
        self._keys.clear()


async def get_or_create_data_key(
    table: KeyTable,
    keyring: Keyring,
    user_id: str,
    created_at: Callable[[], str],
    cache: DataKeyCache | None = None,
) -> DataKey:
    """The user's data key; made, wrapped and inserted when the user has none yet."""
    wrapped = await table.select_wrapped_key(user_id)
    if wrapped is None:
        key = new_data_key()
        wrapped = wrap_data_key(keyring, user_id, key)
        await table.insert_wrapped_key(user_id, wrapped, created_at())
    else:
        cached = None if cache is None else cache.get(user_id, wrapped)
        if cached is not None:
            return cached
        key = unwrap_data_key(keyring, user_id, wrapped)
    if cache is not None:
        cache.put(user_id, wrapped, key)
    return key
