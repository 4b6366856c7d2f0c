"""An identity provider's JSON Web Key Set (RFC 7517), read from a file or a URL and cached.

Supabase Auth, Auth0, Keycloak and the like publish the public keys their tokens are signed
with as a JWKS. A :class:`JwksCache` holds the usable signing keys of one such set (RSA keys for
RS256, P-256 keys for ES256; encryption keys and other types are skipped, each with the reason)
and is refetched:

- when a token names a key id the cache lacks (the provider rotated its keys) — at most once per
  ``refresh_interval`` (60 s by default), so tokens with made-up key ids cannot make the server
  hammer the provider; after a failed fetch, retries come sooner (every 5 s at most);
- when the cache is older than ``max_age``, by whoever owns it (the server runs a task).

Each load that changes the set of keys bumps :attr:`JwksCache.version`, so whoever caches
verified tokens can drop them: a token signed by a key the provider retired is refused at its
next use, not only when it expires.

A fetch is async and bounded by ``timeout``, so it never blocks the event loop, and a set that
cannot be fetched fails closed: the keys fetched before stay in use, and a token that needs a
key nobody could fetch is refused with ``Unauthorized(code="jwks_unavailable")``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from .errors import ConfigError, Unauthorized
from .public_keys import PublicKey, load_public_key

__all__ = ["JwksCache", "parse_jwks"]

MAX_JWKS_BYTES: Final = 1024 * 1024
MAX_JWKS_KEYS: Final = 100
RETRY_AFTER_FAILURE: Final = 5.0


def parse_jwks(document: Any, source: str) -> tuple[tuple[PublicKey, ...], tuple[str, ...]]:
    """The usable signing keys of a JWKS document, and why each other key was skipped.

    ``ConfigError`` when ``document`` is not a JWKS at all (no ``keys`` list).
    """
    listed = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(listed, list):
        raise ConfigError(f'{source} holds no "keys" list')
    if len(listed) > MAX_JWKS_KEYS:
        raise ConfigError(f"{source} lists {len(listed)} keys; at most {MAX_JWKS_KEYS} are read")
    keys: list[PublicKey] = []
    skipped: list[str] = []
    for index, jwk in enumerate(listed):
        if not isinstance(jwk, dict):
            skipped.append(f"key #{index}: not a JSON object")
            continue
        kid = jwk.get("kid")
        label = f"key {kid!r}" if isinstance(kid, str) else f"key #{index}"
        use, ops = jwk.get("use"), jwk.get("key_ops")
        if use is not None and use != "sig":
            skipped.append(f"{label}: for {use!r}, not for signatures")
            continue
        if isinstance(ops, list) and "verify" not in ops:
            skipped.append(f"{label}: key_ops do not include 'verify'")
            continue
        try:
            keys.append(load_public_key(jwk))
        except ConfigError as exc:
            skipped.append(f"{label}: {exc.message}")
    return tuple(keys), tuple(skipped)


class JwksCache:
    """The signing keys of one JWKS (``url`` or ``path``), refetched as the module describes.

    ``clock`` (monotonic seconds) and ``transport`` (an httpx transport) are for tests.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        path: str | Path | None = None,
        refresh_interval: float = 60.0,
        max_age: float = 3600.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("a JwksCache reads either a url or a path")
        self.url = url
        self.path = Path(path) if path is not None else None
        self.source = f"JWKS {url}" if url is not None else f"JWKS file {path}"
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self.timeout = timeout
        self.keys: tuple[PublicKey, ...] = ()
        self.skipped: tuple[str, ...] = ()
        self.loaded = False
        self.last_error: str | None = None
        self.fetches = 0  # attempts, successful or not
        self.version = 0  # +1 each time a load changes the set of keys
        self._clock = clock
        self._transport = transport
        self._last_attempt: float | None = None
        self._last_ok = False
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    # -- state ----------------------------------------------------------------------------
    def may_refresh(self) -> bool:
        """True when a refetch is allowed now (never fetched, or the interval has passed)."""
        if self._last_attempt is None:
            return True
        wait = self.refresh_interval
        if not self._last_ok:
            wait = min(wait, RETRY_AFTER_FAILURE)
        return self._clock() - self._last_attempt >= wait

    @property
    def stale(self) -> bool:
        """True when the keys are older than ``max_age`` (or were never loaded)."""
        return not self.loaded or self._clock() - self._loaded_at >= self.max_age

    def _store(self, document: Any) -> None:
        keys, skipped = parse_jwks(document, self.source)
        if keys != self.keys:
            self.version += 1
        self.keys, self.skipped = keys, skipped
        self.loaded = True
        self._last_ok = True
        self._loaded_at = self._clock()
        self.last_error = None

    def _failed(self, exc: ConfigError) -> None:
        self._last_ok = False
        self.last_error = exc.message

    # -- loading --------------------------------------------------------------------------
    def load(self) -> None:
        """Read or fetch the set now, blocking (for the CLI and for start-up from a file).

        ``ConfigError`` saying why when it cannot be read; the keys held before stay.
        """
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            document = self._read_file() if self.path is not None else self._fetch_sync()
            self._store(document)
        except ConfigError as exc:
            self._failed(exc)
            raise

    async def refresh(self) -> None:
        """Read or fetch the set now without blocking the event loop (same errors as load)."""
        async with self._lock:
            await self._refresh_locked()

    async def refresh_on_miss(self) -> None:
        """A token named a key the cache lacks: refetch if allowed, else keep what is held.

        ``Unauthorized(code="jwks_unavailable")`` when the set cannot be fetched now and no
        fetch has ever succeeded — or this fetch failed, so the key cannot be known.
        """
        async with self._lock:
            # Waiters behind a fetch that just finished find may_refresh() False: one fetch
            # serves every token that was waiting for it.
            if self.may_refresh():
                try:
                    await self._refresh_locked()
                except ConfigError as exc:
                    raise _unavailable(self.source) from exc
            elif not self.loaded:
                raise _unavailable(self.source)

    async def _refresh_locked(self) -> None:
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            if self.path is not None:
                document = self._read_file()  # a small local file: not worth a thread
            else:
                document = await self._fetch_async()
            self._store(document)
        except ConfigError as exc:
            self._failed(exc)
            raise

    def _read_file(self) -> Any:
        assert self.path is not None
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {self.source}: {exc.strerror or exc}") from exc
        return self._decode(raw)

    def _decode(self, raw: bytes) -> Any:
        if len(raw) > MAX_JWKS_BYTES:
            raise ConfigError(f"{self.source} is larger than {MAX_JWKS_BYTES} bytes")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{self.source} is not valid JSON") from exc

    async def _fetch_async(self) -> Any:
        assert self.url is not None
        raw = bytearray()
        try:
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(
                    timeout=self.timeout, transport=self._transport, follow_redirects=False
                ) as client,
                client.stream("GET", self.url, headers=_ACCEPT) as response,
            ):
                _check_status(response, self.url)
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_JWKS_BYTES:
                        break  # _decode refuses it
        except TimeoutError as exc:
            raise ConfigError(f"cannot fetch {self.url}: timed out") from exc
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot fetch {self.url}: {_describe(exc)}") from exc
        return self._decode(bytes(raw))

    def _fetch_sync(self) -> Any:
        assert self.url is not None
        raw = bytearray()
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False) as client,
                client.stream("GET", self.url, headers=_ACCEPT) as response,
            ):
                _check_status(response, self.url)
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_JWKS_BYTES:
                        break
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot fetch {self.url}: {_describe(exc)}") from exc
        return self._decode(bytes(raw))


_ACCEPT: Final = {"Accept": "application/jwk-set+json, application/json"}


def _check_status(response: httpx.Response, url: str) -> None:
    if response.status_code != 200:
        raise ConfigError(f"cannot fetch {url}: HTTP {response.status_code}")


def _describe(exc: httpx.HTTPError) -> str:
    # One line, never the response body.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _unavailable(source: str) -> Unauthorized:
    return Unauthorized(
        f"the identity provider's signing keys ({source}) cannot be fetched; try again later",
        code="jwks_unavailable",
    )
