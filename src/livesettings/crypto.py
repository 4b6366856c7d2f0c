"""Envelope encryption of the secrets in ``api_keys`` (DESIGN §6), with AES-256-GCM.

Three layers of keys:

    master key (Keyring, never in the database; LIVESETTINGS_MASTER_KEYS or a 0600 file)
      └── wraps each user's data key        -> WrappedKey {id, master_key_id, blob}
            └── seals each of the user's secrets -> envelope {"$sealed": 1, "kid", "nonce", "ct", …}

Rotation (``livesettings keys rotate``) re-wraps every data key under the new active master key
with :func:`rewrap_data_key`; the sealed secrets themselves never change. ``keys rotate
--data-keys`` goes further: each user gets a new data key and every secret is re-sealed under
it (:func:`reseal_under_new_key`). Every ciphertext is
bound by its associated data to the user and to the key or secret it belongs to, so a row copied
to another user or another name does not decrypt.

Key material and plaintext never appear in exception messages, reprs or logs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, CryptoError

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "DataKey",
    "Keyring",
    "MasterKey",
    "Resealed",
    "WrappedKey",
    "generate_master_key",
    "load_or_create_secret_file",
    "new_data_key",
    "open_secret",
    "reseal_secret",
    "reseal_under_new_key",
    "rewrap_data_key",
    "seal_secret",
    "unwrap_data_key",
    "wrap_data_key",
]

KEY_SIZE: Final = 32  # AES-256
NONCE_SIZE: Final = 12  # 96-bit GCM nonce, the size GCM is specified for
_TAG_SIZE: Final = 16

# Domain separation: a wrapped data key can never be opened as a secret, nor the reverse.
_WRAP_LABEL: Final = "livesettings/data-key/v1"
_SEAL_LABEL: Final = "livesettings/secret/v1"

_KEY_ID_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KEY_ID_RULE: Final = "1 to 64 letters, digits, '_', '.' or '-'"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, repr=False)
class _IdentifiedKey:
    """A key and its id; the key's bytes never appear in a repr (logs, tracebacks)."""

    id: str
    key: bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, key=<hidden>)"


@dataclass(frozen=True, repr=False)
class MasterKey(_IdentifiedKey):
    """A 32-byte key-encryption key and its id (recorded in every key it wraps)."""


@dataclass(frozen=True, repr=False)
class DataKey(_IdentifiedKey):
    """A user's 32-byte data key; ``id`` (16 hex chars) is bound into every secret it seals."""


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under a master key: ``blob`` = base64(nonce ‖ ciphertext ‖ tag)."""

    id: str
    master_key_id: str
    blob: str


class Keyring:
    """The master keys: the first is active (wraps new keys), the others are only read.

    Old keys stay in the ring until rotation has re-wrapped every data key under the active
    one; then they can be removed.
    """

    def __init__(self, keys: Sequence[MasterKey]) -> None:
        if not keys:
            raise ConfigError("the master keyring is empty")
        by_id: dict[str, MasterKey] = {}
        for key in keys:
            if not isinstance(key.id, str) or not _KEY_ID_RE.fullmatch(key.id):
                raise ConfigError(f"a master key id is invalid ({_KEY_ID_RULE})")
            if key.id in by_id:
                raise ConfigError(f"master key id {key.id!r} appears more than once")
            if not isinstance(key.key, bytes) or len(key.key) != KEY_SIZE:
                raise ConfigError(f"master key {key.id!r} must be {KEY_SIZE} bytes")
            by_id[key.id] = key
        self._keys = by_id
        self._active = keys[0]

    @property
    def active(self) -> MasterKey:
        """The key that wraps new and re-wrapped data keys."""
        return self._active

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id, the active one first."""
        return tuple(self._keys)

    def get(self, key_id: str) -> MasterKey:
        """The key named ``key_id``; ``CryptoError(code="unknown_master_key")`` if absent."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise CryptoError(
                f"master key {key_id!r} is not in the keyring", code="unknown_master_key"
            ) from None

    @classmethod
    def parse(cls, spec: str, *, source: str = "LIVESETTINGS_MASTER_KEYS") -> Keyring:
        """Parse ``"id:base64,id:base64"``; ``source`` names the setting in error messages.

        Messages name the entry by position and never echo what it holds: a malformed entry
        may well be a bare key.
        """
        entries = [entry.strip() for entry in spec.split(",")]
        if entries == [""]:
            raise ConfigError(f"{source} is empty")
        keys: list[MasterKey] = []
        seen: set[str] = set()
        for number, entry in enumerate(entries, start=1):
            key_id, colon, b64 = entry.partition(":")
            key_id = key_id.strip()
            if not colon:
                raise ConfigError(f"{source}: entry {number} is not of the form id:base64")
            if not _KEY_ID_RE.fullmatch(key_id):
                raise ConfigError(
                    f"{source}: entry {number} has an invalid key id ({_KEY_ID_RULE})"
                )
            if key_id in seen:
                raise ConfigError(f"{source}: entry {number} repeats key id {key_id!r}")
            seen.add(key_id)
            key = _decode_key(b64.strip(), f"{source}: entry {number} (key id {key_id!r})")
            keys.append(MasterKey(key_id, key))
        return cls(keys)

    @classmethod
    def from_single(cls, b64: str, *, source: str = "LIVESETTINGS_MASTER_KEY") -> Keyring:
        """A one-key ring from a bare base64 key; its id is ``"k-"`` + 8 hex of its sha256."""
        key = _decode_key(b64.strip(), source)
        return cls([MasterKey(_derived_id(key), key)])

    @classmethod
    def load_or_create_file(cls, path: Path) -> Keyring:
        """The embedded default: read the key file at ``path``, creating it if missing.

        The file holds one line ``id:base64`` and is created with mode 0600; a file that
        group or others can access is refused (``ConfigError``).
        """

        def make() -> str:
            key = generate_master_key()
            return f"{key.id}:{base64.b64encode(key.key).decode('ascii')}"

        content = load_or_create_secret_file(path, make)
        return cls.parse(content.strip(), source=f"key file {path}")

    def describe(self) -> str:
        """The key ids for logs and ``verify``: ``"k1 (active), k0"`` — never key material."""
        ids = self.ids
        return ", ".join([f"{ids[0]} (active)", *ids[1:]])

    def __repr__(self) -> str:
        return f"Keyring({self.describe()})"


def generate_master_key() -> MasterKey:
    """A fresh random master key, id ``"k-<8 hex>"``."""
    key = os.urandom(KEY_SIZE)
    return MasterKey(_derived_id(key), key)


def new_data_key() -> DataKey:
    """A fresh random data key for a user, with a random 16-hex-char id."""
    return DataKey(secrets.token_hex(8), os.urandom(KEY_SIZE))


def wrap_data_key(keyring: Keyring, user_id: str, key: DataKey) -> WrappedKey:
    """Encrypt ``key`` under the keyring's active master key, bound to ``user_id``."""
    master = keyring.active
    nonce = os.urandom(NONCE_SIZE)
    ct = AESGCM(master.key).encrypt(nonce, key.key, _aad(_WRAP_LABEL, user_id, key.id))
    return WrappedKey(key.id, master.id, _b64(nonce + ct))


def unwrap_data_key(keyring: Keyring, user_id: str, wrapped: WrappedKey) -> DataKey:
    """Decrypt a wrapped data key with the master key it names.

    ``CryptoError(code="unknown_master_key")`` when the ring lacks that key;
    ``CryptoError(code="decrypt_failed")`` when the blob is malformed, tampered, or belongs to
    another user or data key id.
    """
    master = keyring.get(wrapped.master_key_id)
    raw = _unb64(wrapped.blob, "wrapped data key is malformed")
    if len(raw) != NONCE_SIZE + KEY_SIZE + _TAG_SIZE:
        raise CryptoError("wrapped data key is malformed")
    nonce, ct = raw[:NONCE_SIZE], raw[NONCE_SIZE:]
    try:
        key = AESGCM(master.key).decrypt(nonce, ct, _aad(_WRAP_LABEL, user_id, wrapped.id))
    except InvalidTag as exc:
        raise CryptoError(
            f"data key {wrapped.id!r} does not decrypt for this user under master key {master.id!r}"
        ) from exc
    return DataKey(wrapped.id, key)


def rewrap_data_key(keyring: Keyring, user_id: str, wrapped: WrappedKey) -> WrappedKey:
    """Unwrap with whichever master key ``wrapped`` names and wrap under the active one."""
    return wrap_data_key(keyring, user_id, unwrap_data_key(keyring, user_id, wrapped))


def seal_secret(
    user_id: str, name: str, plaintext: str, key: DataKey, *, now_ms: int
) -> dict[str, Any]:
    """Encrypt one secret of ``api_keys`` into the envelope that is stored in its place.

    ``last4`` is kept in clear (for the masked view) only for secrets of at least 12
    characters, where 4 characters reveal little.
    """
    return {
        "$sealed": 1,
        **_encrypted(user_id, name, plaintext, key),
        "last4": plaintext[-4:] if len(plaintext) >= 12 else None,
        "updated_at": _rfc3339_ms(now_ms),
    }


def _encrypted(user_id: str, name: str, plaintext: str, key: DataKey) -> dict[str, Any]:
    """The ``kid``, ``nonce`` and ``ct`` of an envelope: ``plaintext`` sealed under ``key``
    with a fresh nonce, bound to the user, the name and the key id."""
    nonce = os.urandom(NONCE_SIZE)
    ct = AESGCM(key.key).encrypt(
        nonce, plaintext.encode("utf-8", "surrogatepass"), _aad(_SEAL_LABEL, user_id, name, key.id)
    )
    return {"kid": key.id, "nonce": _b64(nonce), "ct": _b64(ct)}


def open_secret(user_id: str, name: str, envelope: Mapping[str, Any], key: DataKey) -> str:
    """Decrypt an envelope made by :func:`seal_secret` for the same user, name and data key.

    Raises ``CryptoError`` for a malformed or tampered envelope, another user, another name
    or another data key.
    """
    if not isinstance(envelope, Mapping) or envelope.get("$sealed") != 1:
        raise CryptoError("secret envelope is malformed")
    kid, nonce_b64, ct_b64 = envelope.get("kid"), envelope.get("nonce"), envelope.get("ct")
    if not isinstance(kid, str) or not isinstance(nonce_b64, str) or not isinstance(ct_b64, str):
        raise CryptoError("secret envelope is malformed")
    if kid != key.id:
        raise CryptoError(f"secret was sealed under data key {kid!r}, not {key.id!r}")
    nonce = _unb64(nonce_b64, "secret envelope is malformed")
    ct = _unb64(ct_b64, "secret envelope is malformed")
    if len(nonce) != NONCE_SIZE or len(ct) < _TAG_SIZE:
        raise CryptoError("secret envelope is malformed")
    try:
        data = AESGCM(key.key).decrypt(nonce, ct, _aad(_SEAL_LABEL, user_id, name, key.id))
    except InvalidTag as exc:
        raise CryptoError(f"secret {name!r} does not decrypt for this user and data key") from exc
    return data.decode("utf-8", "surrogatepass")


def reseal_secret(
    user_id: str, name: str, envelope: Mapping[str, Any], old: DataKey, new: DataKey
) -> dict[str, Any]:
    """The envelope re-encrypted under data key ``new`` (data-key rotation), with a fresh
    nonce; what it shows in clear (``last4``, ``updated_at``) is kept, as the value is.

    Raises ``CryptoError`` when it does not open under ``old``.
    """
    plaintext = open_secret(user_id, name, envelope, old)
    return {**envelope, **_encrypted(user_id, name, plaintext, new)}


@dataclass(frozen=True)
class Resealed:
    """A user's secrets re-sealed under a new data key, and that key wrapped (data-key
    rotation); ``count`` is how many secrets were re-sealed."""

    wrapped: WrappedKey
    secrets: dict[str, Any]
    count: int


def reseal_under_new_key(
    keyring: Keyring, user_id: str, wrapped: WrappedKey, secrets_: Mapping[str, Any]
) -> Resealed:
    """Open every sealed secret of ``secrets_`` with the data key ``wrapped`` holds and seal
    it under a fresh data key (a new id), wrapped by the active master key.

    ``CryptoError`` when the old key does not unwrap or a secret does not open: then nothing
    should be written.
    """
    old = unwrap_data_key(keyring, user_id, wrapped)
    new = new_data_key()
    while new.id == old.id:  # 64 random bits: never in practice, but ids must differ
        new = new_data_key()
    out: dict[str, Any] = {}
    count = 0
    for name, value in secrets_.items():
        if isinstance(value, Mapping) and value.get("$sealed") == 1:
            out[name] = reseal_secret(user_id, name, value, old, new)
            count += 1
        else:
            out[name] = value
    return Resealed(wrap_data_key(keyring, user_id, new), out, count)


def load_or_create_secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a private key file, creating it with ``make()`` and mode 0600 if it is missing.

    A file that group or others may access is refused with ``ConfigError``. Creation is
    atomic (a fully written temporary file is hard-linked into place), so two processes
    starting together agree on one key and never see a half-written file.
    """
    try:
        return _read_private_file(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = (make() + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_new_file(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # A filesystem without hard links: exclusive create is still race-free.
            with contextlib.suppress(FileExistsError):
                _write_new_file(path, data)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # losing the key file after a crash would lose every secret
    return _read_private_file(path)


def _read_private_file(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)  # fstat of the open file: no window between check and read
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise ConfigError(
                f"key file {path} is accessible by group or others (mode {mode:04o}); "
                f"run: chmod 600 {path}"
            )
        with os.fdopen(os.dup(fd), "rb") as file:
            raw = file.read()
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"key file {path} is not UTF-8 text") from None
    if not text.strip():
        raise ConfigError(f"key file {path} is empty")
    return text


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _decode_key(b64: str, what: str) -> bytes:
    # Accept standard and URL-safe alphabets, padded or not (openssl, Python, JWK habits).
    text = b64.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise ConfigError(f"{what} must decode to {KEY_SIZE} bytes, got {len(key)}")
    return key


def _derived_id(key: bytes) -> str:
    return "k-" + hashlib.sha256(key).hexdigest()[:8]


def _aad(*parts: str) -> bytes:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") never give the same associated data.
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, message: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(message) from None


def _rfc3339_ms(now_ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=now_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
