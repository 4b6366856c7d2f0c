"""Authentication building blocks (DESIGN §4, §6): passwords, access tokens, refresh tokens.

- :class:`PasswordHasher` — Argon2id for built-in users.
- :class:`TokenIssuer` — HS256 access tokens for built-in users.
- :class:`TokenVerifier` — checks every access token: HS256 with the configured or generated
  secret, RS256/ES256 with an identity provider's public keys. The accepted algorithm is
  decided by the type of each configured key, never by the token, so ``alg: none`` and
  HS256-signed-with-the-public-key forgeries are refused.
- Refresh tokens are opaque random strings, stored only as their SHA-256.

PyJWT and argon2 errors are translated here into :class:`~livesettings.errors.Unauthorized`
(``code="invalid_token"``) and :class:`~livesettings.errors.TokenExpired`; messages say why a
token was refused and never echo it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import argon2
import jwt
from argon2.exceptions import InvalidHashError, VerificationError
from jwt.algorithms import HMACAlgorithm

from .clock import SYSTEM_CLOCK, Clock
from .crypto import load_or_create_secret_file
from .errors import ConfigError, TokenExpired, Unauthorized, ValidationError
from .public_keys import PublicKey, VerifyKey, load_public_key

if TYPE_CHECKING:
    from .jwks import JwksCache

__all__ = [
    "ANON_ROLE",
    "MAX_SERVICE_TOKEN_TTL",
    "MIN_SECRET_BYTES",
    "SERVICE_TOKEN_TTL",
    "Claims",
    "PasswordHasher",
    "PublicKey",
    "ServiceClaim",
    "TokenIssuer",
    "TokenVerifier",
    "has_claim",
    "hash_refresh_token",
    "load_or_create_jwt_secret",
    "load_public_key",
    "new_family_id",
    "new_refresh_token",
    "parse_service_claim",
    "validate_password",
    "validate_username",
]

MIN_SECRET_BYTES: Final = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MAX_SUB_CHARS: Final = 128  # user ids are text of at most 128 chars (DESIGN §2)
MAX_TOKEN_CHARS: Final = 16 * 1024  # refuse absurd tokens before parsing them
SERVICE_TOKEN_TTL: Final = 24 * 3600  # a service token's default lifetime, and its cap
MAX_SERVICE_TOKEN_TTL: Final = 90 * 24 * 3600  # the cap with --allow-long-ttl; enforced on use

_USERNAME_RE: Final = re.compile(r"[A-Za-z0-9_.@+\-]{3,64}")  # "+": e-mail sub-addresses
_MIN_PASSWORD, _MAX_PASSWORD = 8, 1024

ANON_ROLE: Final = "anon"
"""The ``role`` of an anon key (Supabase's name): it identifies an app, never a user."""

_PUBLIC_ALGS: Final = ("RS256", "ES256")
_NO_KEY: Final = "no configured key matches the token's key id"


# --- passwords -------------------------------------------------------------------------------


class PasswordHasher:
    """Argon2id password hashing; the defaults are OWASP's minimum (19 MiB, 2 passes)."""

    def __init__(
        self, *, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """The encoded Argon2id hash (``$argon2id$…``), salt included."""
        return self._hasher.hash(password)

    def verify(self, hashed: str, password: str) -> bool:
        """True when ``password`` matches; False on a mismatch or an unusable stored hash."""
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        """True when ``hashed`` was made with other parameters (rehash it after a sign-in)."""
        try:
            return self._hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    def dummy_verify(self, password: str) -> bool:
        """Spend the time of a real verify and return False.

        Call it when the username does not exist, so that the response time does not tell
        which usernames exist.
        """
        if self._dummy is None:
            self._dummy = self.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy, password)
        return False


def validate_username(name: Any) -> str:
    """A username of 3 to 64 characters from ``[A-Za-z0-9_.@+-]``, returned unchanged."""
    if not isinstance(name, str) or not _USERNAME_RE.fullmatch(name):
        raise ValidationError(
            "username must be 3 to 64 characters: letters, digits, '_', '.', '@', '+' or '-'",
            path="/username",
            code="invalid_username",
        )
    return name


def validate_password(pw: Any) -> str:
    """A password of 8 to 1024 characters (the upper bound keeps hashing cheap to refuse)."""
    if not isinstance(pw, str) or not _MIN_PASSWORD <= len(pw) <= _MAX_PASSWORD:
        raise ValidationError(
            f"password must be {_MIN_PASSWORD} to {_MAX_PASSWORD} characters",
            path="/password",
            code="weak_password",
        )
    return pw


# --- access tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claims:
    """The verified claims of an access token; ``raw`` holds every claim as received.

    ``builtin`` is True when the server's own HS256 secret verified the token, False when an
    identity provider's key did; ``provider_service`` when a provider's token carries the
    claim the operator named for service access (``LIVESETTINGS_IDP_SERVICE_CLAIM``).
    """

    sub: str
    exp: int
    iat: float | None
    role: str | None
    raw: dict[str, Any] = field(hash=False)
    jti: str | None = None
    builtin: bool = False
    provider_service: bool = False

    @property
    def is_service(self) -> bool:
        """A service token may read and write any user's settings (DESIGN §4).

        Only the built-in issuer's ``role: "service"`` grants it — an identity provider's
        ``role`` claim is the provider's to define and may be given to other applications —
        unless the operator named a provider claim for it.
        """
        if self.builtin:
            return self.role == "service"
        return self.provider_service


ServiceClaim = tuple[tuple[str, ...], str]
"""An identity provider's claim that grants service access: its path and required value."""


def parse_service_claim(text: str) -> ServiceClaim:
    """``"role:service"`` or ``"app_metadata.role:service"`` → ``(("app_metadata", "role"),
    "service")``; ``ConfigError`` for anything else.

    >>> parse_service_claim("app_metadata.role:service")
    (('app_metadata', 'role'), 'service')
    """
    path, colon, value = text.strip().rpartition(":")
    names = tuple(part.strip() for part in path.split("."))
    if not colon or not value.strip() or not all(names):
        raise ConfigError(
            "LIVESETTINGS_IDP_SERVICE_CLAIM must be CLAIM:VALUE, such as role:service or "
            f"app_metadata.role:service; got {text!r}"
        )
    return names, value.strip()


def has_claim(payload: dict[str, Any], wanted: ServiceClaim) -> bool:
    """True when the claim at the path equals the value, or is a list holding it (roles)."""
    path, value = wanted
    found: Any = payload
    for name in path:
        if not isinstance(found, dict) or name not in found:
            return False
        found = found[name]
    return found == value or (isinstance(found, list) and value in found)


class _UnknownKey(Unauthorized):
    """No loaded key fits the token, but a JWKS refetch might bring one (a rotated key)."""


class TokenVerifier:
    """Verifies access tokens with pinned algorithms.

    ``hs256_secret`` accepts HS256 tokens; each public key accepts the one algorithm its type
    implies (RSA → RS256, P-256 → ES256). Public keys are PEM strings (public key or
    certificate), JWK dicts, :class:`jwt.PyJWK` or ``cryptography`` key objects. ``key_sets``
    are identity providers' JWKS (:class:`~livesettings.jwks.JwksCache`), whose keys count as
    configured keys. A token whose header names a ``kid`` is checked with the keys of that
    ``kid`` (and with keys that have none). When no key fits a token but a JWKS might hold it
    (a key the provider has just rotated in), :meth:`verify_async` refetches the JWKS — at most
    once per its refresh interval — and tries again; :meth:`verify` never does I/O.
    """

    def __init__(
        self,
        *,
        hs256_secret: bytes | None = None,
        public_keys: Sequence[Any] = (),
        key_sets: Sequence[JwksCache] = (),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: int = 0,
        service_claim: ServiceClaim | str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._secret = None if hs256_secret is None else _check_secret(hs256_secret)
        if isinstance(service_claim, str):
            service_claim = parse_service_claim(service_claim)
        self.service_claim: ServiceClaim | None = service_claim
        self._public: tuple[PublicKey, ...] = tuple(load_public_key(k) for k in public_keys)
        self.key_sets: tuple[JwksCache, ...] = tuple(key_sets)
        if self._secret is None and not self._public and not self.key_sets:
            raise ConfigError("no JWT secret or public key is configured to verify tokens")
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self._clock = clock

    def add_public_keys(self, keys: Sequence[Any]) -> None:
        """Accept tokens signed by these keys too (all are checked before any is added)."""
        loaded = tuple(load_public_key(k) for k in keys)
        self._public = self._public + loaded

    def replace_public_keys(self, keys: Sequence[Any]) -> None:
        """Replace every public key at once (a JWKS refresh drops retired keys)."""
        loaded = tuple(load_public_key(k) for k in keys)
        if self._secret is None and not loaded and not self.key_sets:
            raise ConfigError("no JWT secret or public key is configured to verify tokens")
        self._public = loaded

    @property
    def has_secret(self) -> bool:
        """True when built-in (HS256) tokens are accepted."""
        return self._secret is not None

    def public_keys(self) -> tuple[PublicKey, ...]:
        """Every public key in use now: the configured ones, then each JWKS's."""
        keys = self._public
        for key_set in self.key_sets:
            keys = keys + key_set.keys
        return keys

    @property
    def keys_version(self) -> tuple[int, ...]:
        """Changes whenever a JWKS refresh changes its key set (cached verifications of
        tokens signed by a retired key must then be dropped)."""
        return tuple(key_set.version for key_set in self.key_sets)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms some loaded key accepts."""
        algs = ["HS256"] if self._secret is not None else []
        algs += [k.alg for k in self.public_keys()]
        return tuple(dict.fromkeys(algs))

    def verify(self, token: str, *, now: float | None = None, anon: bool = False) -> Claims:
        """The claims of a valid token, or ``Unauthorized(code="invalid_token")`` saying why.

        ``exp`` and ``sub`` are required, ``nbf`` is honoured, ``aud`` and ``iss`` are checked
        when configured. An expired token raises :class:`TokenExpired`. ``now`` (Unix seconds)
        defaults to the verifier's clock. Uses the keys loaded now; see :meth:`verify_async`.

        A token with ``role: "anon"`` (an anon key) is refused unless ``anon`` is True: only
        the Supabase-compatible routes ask for one, and its claims then have an empty ``sub``.
        """
        if not isinstance(token, str) or not token:
            raise _invalid("token is missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise _invalid("token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid("token is malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        kid = kid if isinstance(kid, str) else None
        # A JWKS may gain RS256/ES256 keys at its next fetch; anything else is refused now.
        refetchable = bool(self.key_sets) and alg in _PUBLIC_ALGS
        if not isinstance(alg, str) or (alg not in self.algorithms and not refetchable):
            raise _invalid("token algorithm is not accepted")
        candidates = self._candidates(alg, kid)
        kid_known = kid is None or any(k.kid == kid for k in self.public_keys() if k.alg == alg)
        miss = refetchable and (not candidates or not kid_known)
        if not candidates:
            if miss:
                raise _UnknownKey(_NO_KEY, code="invalid_token")
            raise _invalid(_NO_KEY)

        payload: dict[str, Any] | None = None
        bad_signature: jwt.InvalidSignatureError | None = None
        key_alg = alg
        for key, key_alg in candidates:
            try:
                payload = jwt.decode(
                    token,
                    key,
                    algorithms=[key_alg],  # pinned by the key's type, not by the token
                    audience=self.audience,
                    issuer=self.issuer,
                    options={
                        # Time claims are checked below against `now`.
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": self.audience is not None,
                        "verify_iss": self.issuer is not None,
                        # `sub` is checked in _claims: an anon key has none.
                        "verify_sub": False,
                        "require": ["exp"],
                    },
                )
                break
            except jwt.InvalidSignatureError as exc:
                bad_signature = exc  # maybe signed by another key of the same algorithm
            except jwt.PyJWTError as exc:
                raise _invalid(_reason(exc)) from exc
        if payload is None:
            if miss:
                # A new kid that no loaded key verifies: the provider may have rotated.
                raise _UnknownKey(_NO_KEY, code="invalid_token") from bad_signature
            raise _invalid("token signature is invalid") from bad_signature
        when = self._clock.time() if now is None else now
        return self._claims(payload, when, key_alg == "HS256", anon=anon)

    async def verify_async(
        self, token: str, *, now: float | None = None, anon: bool = False
    ) -> Claims:
        """:meth:`verify`, refetching the JWKS once when a token names a key it lacks.

        An identity provider whose JWKS cannot be fetched fails closed:
        ``Unauthorized(code="jwks_unavailable")``.
        """
        try:
            return self.verify(token, now=now, anon=anon)
        except _UnknownKey:
            if not self.key_sets:
                raise
        for key_set in self.key_sets:
            await key_set.refresh_on_miss()
        return self.verify(token, now=now, anon=anon)

    def _candidates(self, alg: str, kid: str | None) -> list[tuple[VerifyKey, str]]:
        """The keys to try for a token of ``alg`` (and ``kid``), each with its one algorithm."""
        if alg == "HS256":
            return [] if self._secret is None else [(self._secret, "HS256")]
        keys = [k for k in self.public_keys() if k.alg == alg]
        if kid is not None and any(k.kid == kid for k in keys):
            keys = [k for k in keys if k.kid == kid]
        elif kid is not None:
            keys = [k for k in keys if k.kid is None]
        return [(k.key, k.alg) for k in keys]

    def _claims(
        self, payload: dict[str, Any], now: float, builtin: bool, *, anon: bool = False
    ) -> Claims:
        exp = _numeric_date(payload.get("exp"), "exp")
        nbf = _numeric_date(payload["nbf"], "nbf") if "nbf" in payload else None
        iat = _numeric_date(payload["iat"], "iat") if "iat" in payload else None
        if exp <= now - self.leeway:
            raise TokenExpired("token expired")
        if nbf is not None and nbf > now + self.leeway:
            raise _invalid("token is not valid yet")
        jti = payload.get("jti")
        jti = jti if isinstance(jti, str) and jti else None
        if payload.get("role") == ANON_ROLE:
            if not anon:
                raise _invalid(
                    'this is an anon key (role "anon"): it names no user; '
                    "sign in and send the user's access token"
                )
            return Claims(
                sub="",
                exp=math.floor(exp),
                iat=iat,
                role=ANON_ROLE,
                raw=payload,
                jti=jti,
                builtin=builtin,
            )
        if payload.get("sub") is None:  # as PyJWT's "require" would say
            raise _invalid('token is missing the "sub" claim')
        sub = payload.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
            raise _invalid(f"token subject must be a non-empty string of at most {MAX_SUB_CHARS}")
        role = payload.get("role")
        # Identity providers use their own role shapes; only a string can name "service".
        role = role if isinstance(role, str) else None
        if (
            builtin
            and role == "service"
            and exp - (now if iat is None else iat) > (MAX_SERVICE_TOKEN_TTL + self.leeway)
        ):
            # Issued before lifetimes were capped (or signed elsewhere with the secret).
            raise _invalid(
                f"service token lives longer than {MAX_SERVICE_TOKEN_TTL // 86400} days; "
                "issue a new one"
            )
        return Claims(
            sub=sub,
            exp=math.floor(exp),
            iat=iat,  # kept to the millisecond: session revocations compare against it
            role=role,
            raw=payload,
            jti=jti,
            builtin=builtin,
            provider_service=(
                not builtin
                and self.service_claim is not None
                and has_claim(payload, self.service_claim)
            ),
        )


class TokenIssuer:
    """Issues HS256 access tokens for built-in users (15 minutes by default), dated by
    ``clock`` unless ``issue`` is given ``now``."""

    def __init__(
        self,
        secret: bytes,
        *,
        ttl_seconds: int = 900,
        issuer: str | None = None,
        audience: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if ttl_seconds <= 0:
            raise ConfigError("the access token lifetime must be positive")
        self._secret = _check_secret(secret)
        self.ttl_seconds = ttl_seconds
        self.issuer = issuer
        self.audience = audience
        self._clock = clock

    def issue(
        self,
        user_id: str,
        *,
        role: str | None = None,
        ttl_seconds: int | None = None,
        now: float | None = None,
        signed_in: bool = False,
        audience: str | None = None,
    ) -> tuple[str, int]:
        """A signed token for ``user_id`` and its expiry (Unix seconds).

        ``audience`` is the ``aud`` claim when no audience is configured (the configured one
        always wins, as the verifier requires it); the Supabase-compatible routes ask for
        ``"authenticated"``.

        ``signed_in``: the user just proved who they are (a password), so the token carries
        ``auth_time`` (OpenID Connect's name); a token traded for a refresh token has none, so
        a refreshed session cannot pass for a recent sign-in (deleting the account needs one).
        """
        if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_SUB_CHARS:
            raise ValueError(f"user_id must be a non-empty string of at most {MAX_SUB_CHARS}")
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if ttl <= 0:
            raise ValueError("ttl_seconds must be positive")
        issued = self._clock.time() if now is None else now
        iat = math.floor(issued)
        exp = iat + ttl
        claims: dict[str, Any] = {
            "sub": user_id,
            # Millisecond precision, so a session revoked in the same second as a fresh
            # sign-in keeps the new token and voids the old one.
            "iat": math.floor(issued * 1000) / 1000,
            "exp": exp,
            "jti": secrets.token_urlsafe(16),
        }
        if signed_in:
            claims["auth_time"] = iat
        if role is not None:
            claims["role"] = role
        if self.issuer is not None:
            claims["iss"] = self.issuer
        aud = self.audience if self.audience is not None else audience
        if aud is not None:
            claims["aud"] = aud
        return jwt.encode(claims, self._secret, algorithm="HS256"), exp


# --- refresh tokens and secrets --------------------------------------------------------------


def new_refresh_token() -> str:
    """An opaque refresh token (256 random bits); only its hash is stored."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of a refresh token — what the store keeps and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_family_id() -> str:
    """The id shared by a chain of rotated refresh tokens (reuse revokes the family)."""
    return str(uuid.uuid4())


def load_or_create_jwt_secret(path: Path) -> bytes:
    """The embedded default's HS256 secret: 32 random bytes, base64 in a 0600 file.

    Created if missing; a file that group or others can access is refused (``ConfigError``).
    """
    text = load_or_create_secret_file(
        path, lambda: base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode("ascii")
    )
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"JWT secret file {path} is not valid base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"JWT secret file {path} must hold at least {MIN_SECRET_BYTES} bytes")
    return secret


# --- helpers ---------------------------------------------------------------------------------


def _invalid(message: str) -> Unauthorized:
    return Unauthorized(message, code="invalid_token")


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f'token is missing the "{exc.claim}" claim'
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm is not accepted"
    if isinstance(exc, jwt.exceptions.InvalidSubjectError):
        return f"token subject must be a non-empty string of at most {MAX_SUB_CHARS}"
    if isinstance(exc, jwt.exceptions.InvalidJTIError):
        return 'token "jti" claim must be a string'
    if isinstance(exc, jwt.DecodeError):
        return "token is malformed"
    return "token is invalid"


def _numeric_date(value: Any, claim: str) -> float:
    # JSON numbers only: no bools, no strings, and no NaN/Infinity (Python's json accepts them).
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(f'token "{claim}" claim must be a number of seconds')
    return float(value)


def _check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    try:
        # PyJWT refuses PEM/SSH/DER-looking HMAC keys; find out now rather than per token.
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError as exc:
        raise ConfigError("the JWT secret looks like a public key, not a shared secret") from exc
    return secret
