"""Master-key rotation: re-wrap every data key under the keyring's active master key (DESIGN §6).

Rotation is resumable by construction: each pass asks the store for data keys *not yet* under
the active key, re-wraps them and writes each back with a compare-and-set, so an interrupted
run (Ctrl-C, a crash, ``max_keys``) simply continues where it stopped when run again, and a key
a server replaced meanwhile is never overwritten. Secrets themselves are never touched: their
data keys keep their ids, only the wrapping changes.

Data-key rotation (:func:`renew_data_keys`, ``keys rotate --data-keys``) goes further: each
user gets a new random data key (a new id, wrapped by the active master key) and every secret
is re-sealed under it, user by user, each in one transaction the store serialises with that
user's writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .crypto import Keyring, rewrap_data_key
from .errors import CryptoError, LiveSettingsError
from .store import Store

__all__ = [
    "RenewalResult",
    "RotationResult",
    "missing_master_keys",
    "renew_data_keys",
    "retired_master_keys",
    "rotate_data_keys",
]

DEFAULT_BATCH = 500
_MAX_STALLED = 3  # batches in a row that lost every compare-and-set before giving up


@dataclass
class RotationResult:
    """What one run of :func:`rotate_data_keys` did.

    ``failed`` maps a user id to why its data key could not be re-wrapped (never key
    material); ``raced`` counts keys another rotation changed first; ``counts`` is how many
    data keys each master key id wraps at the end; ``stopped`` is true when ``max_keys``
    ended the run before every key was done.
    """

    active_id: str
    rewrapped: int = 0
    raced: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        """Data keys still wrapped by a master key other than the active one."""
        return sum(n for key_id, n in self.counts.items() if key_id != self.active_id)

    def retired(self, keyring: Keyring) -> list[str]:
        """Keyring ids other than the active one that no longer wrap any data key."""
        return retired_master_keys(self.counts, keyring)


def retired_master_keys(counts: dict[str, int], keyring: Keyring) -> list[str]:
    """Keyring ids other than the active one that wrap none of ``counts``' data keys."""
    return [k for k in keyring.ids[1:] if counts.get(k, 0) == 0]


def missing_master_keys(counts: dict[str, int], keyring: Keyring) -> dict[str, int]:
    """Master key ids that wrap stored data keys but are not in ``keyring``, with counts."""
    return {key_id: n for key_id, n in counts.items() if key_id not in keyring.ids and n}


async def rotate_data_keys(
    store: Store,
    keyring: Keyring,
    *,
    batch_size: int = DEFAULT_BATCH,
    max_keys: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RotationResult:
    """Re-wrap data keys under ``keyring.active`` in batches of ``batch_size``.

    Stops after ``max_keys`` re-wrapped keys when given (run again to continue).
    ``on_progress(n)`` is called after each batch with the keys it re-wrapped. A data key
    that does not unwrap is recorded in ``failed`` and skipped; keys under a master key the
    ring lacks should be refused before calling (see :func:`missing_master_keys`), or each
    of them ends up in ``failed``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    active = keyring.active.id
    result = RotationResult(active)
    stalled = 0
    while max_keys is None or result.rewrapped < max_keys:
        want = batch_size if max_keys is None else min(batch_size, max_keys - result.rewrapped)
        # Keys that failed stay "not under" the active key and may come back: asking for that
        # many more rows leaves at least `want` others, whatever order the store uses.
        rows = await store.wrapped_keys_not_under(active, want + len(result.failed))
        todo = [(user, key) for user, key in rows if user not in result.failed][:want]
        if not todo:
            break
        done = 0
        failures = len(result.failed)
        for user_id, wrapped in todo:
            try:
                new = rewrap_data_key(keyring, user_id, wrapped)
            except CryptoError as exc:
                result.failed[user_id] = exc.message
                continue
            if await store.replace_wrapped_key(user_id, wrapped, new):
                done += 1
            else:
                # Changed meanwhile (another rotation got there first): the next query
                # returns its current form if it still needs re-wrapping.
                result.raced += 1
        result.rewrapped += done
        if on_progress is not None and done:
            on_progress(done)
        stalled = stalled + 1 if done == 0 and len(result.failed) == failures else 0
        if stalled >= _MAX_STALLED:
            raise LiveSettingsError(
                "data keys kept changing during rotation; run `livesettings keys rotate` again",
                code="rotation_raced",
            )
    else:
        left = await store.wrapped_keys_not_under(active, len(result.failed) + 1)
        result.stopped = any(user not in result.failed for user, _ in left)
    result.counts = await store.count_wrapped_keys()
    return result


@dataclass
class RenewalResult:
    """What one run of :func:`renew_data_keys` did: ``users`` given a new data key,
    ``secrets`` re-sealed, ``failed`` users (left unchanged) with why, and the ``counts`` of
    data keys per master key id at the end."""

    active_id: str
    users: int = 0
    secrets: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


async def renew_data_keys(
    store: Store,
    keyring: Keyring,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> RenewalResult:
    """Give every user with a data key a new one and re-seal their secrets under it.

    ``store`` must hold ``keyring``. A user whose key or secrets do not open is recorded in
    ``failed`` and left as it was. Safe while servers run: the store renews each user under
    the lock its commits take.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    result = RenewalResult(keyring.active.id)
    after = ""
    while True:
        users = await store.data_key_users_after(after, batch_size)
        done = 0
        for user_id in users:
            try:
                count = await store.renew_data_key(user_id)
            except CryptoError as exc:
                result.failed[user_id] = exc.message
                continue
            if count is not None:  # None: the user was removed meanwhile
                done += 1
                result.secrets += count
        result.users += done
        if on_progress is not None and done:
            on_progress(done)
        if len(users) < batch_size:
            break
        after = users[-1]
    result.counts = await store.count_wrapped_keys()
    return result
