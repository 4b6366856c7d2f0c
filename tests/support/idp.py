"""An identity provider for tests: its keys, a real JWKS server on loopback, token forging,
and the audit lines of a server's output."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from livesettings.auth import TokenIssuer
from tests.support.server import TEST_JWT_SECRET

AUDIENCE = "livesettings-test"
ISSUER = "https://idp.example.test"


@dataclass(frozen=True)
class Keys:
    """An identity provider's signing keys (and a stranger's, for forgeries)."""

    rsa: RSAPrivateKey  # LIVESETTINGS_JWT_PUBLIC_KEY
    ec: EllipticCurvePrivateKey  # in the JWKS file, kid "ec-file"
    rsa_url: RSAPrivateKey  # served by the JWKS URL, kid "rsa-url"
    stranger: RSAPrivateKey  # nobody's

    def rsa_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def make_keys() -> Keys:
    def rsa_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    return Keys(rsa_key(), ec.generate_private_key(ec.SECP256R1()), rsa_key(), rsa_key())


def jwk_of(key: Any, kid: str) -> dict[str, Any]:
    """The public JWK of a private key, with its ``kid`` and ``alg``."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return {**json.loads(RSAAlgorithm.to_jwk(public)), "kid": kid, "alg": "RS256", "use": "sig"}
    return {**json.loads(ECAlgorithm.to_jwk(public)), "kid": kid, "alg": "ES256", "use": "sig"}


def signed(key: Any, alg: str, kid: str | None = None, **claims: Any) -> str:
    """A token signed by ``key``: sub, aud, iss and a 10-minute exp unless given."""
    now = int(time.time())
    body = {"sub": "idp-user", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def builtin(user_id: str, *, ttl: int = 600, role: str | None = None) -> str:
    """A built-in (HS256) token as the test servers issue them, for a server with aud/iss."""
    issuer = TokenIssuer(
        TEST_JWT_SECRET.encode(), ttl_seconds=ttl, issuer=ISSUER, audience=AUDIENCE
    )
    return issuer.issue(user_id, role=role)[0]


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS assembled by hand (for what PyJWT refuses to produce)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps(header).encode()) + "." + part(json.dumps(claims).encode())
    return head + "." + part(signature)


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An HS256 token whose HMAC key is ``secret`` — such as a public key's PEM bytes."""
    unsigned = raw_token(header, claims).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass
class JwksServer:
    """A real HTTP server on loopback serving a JWKS that a test can change or take down."""

    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    delay: float = 0.0  # seconds to wait before answering (a hanging identity provider)
    status: int = 200
    hits: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                if owner.delay:
                    time.sleep(owner.delay)
                body = json.dumps(owner.document).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def write_jwks(path: Path, *jwks: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(jwks)}))
    return path


def audit_events(log: str) -> list[dict[str, Any]]:
    """The audit events in a server's output (one JSON object per ``livesettings.audit`` line)."""
    marker = "livesettings.audit: "
    return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]
