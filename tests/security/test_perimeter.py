"""The HTTP perimeter against a real server: DNS rebinding (``Host`` and ``Origin``), slow
clients (headers and bodies that never finish), the connection limit, and the ops token on
``/metrics`` and the API docs.

Raw sockets where a client library would fix the request up (a foreign ``Host`` on a
WebSocket handshake, a body that stops half-way)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from livesettings.config import Config
from livesettings.errors import ConfigError
from livesettings.server.security import host_allowed, origin_allowed
from tests.support.server import ServerProcess
from tests.support.ws import WsClient

OPS_TOKEN = "ops-token-for-the-perimeter-tests"
PUBLIC = "https://settings.example.test"
# Short deadlines, and generous bounds on when they bite (a loaded 2-core box).
TIMEOUT = 2.0
CUT_WITHIN = 12.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """No PUBLIC_URL (the DNS-rebinding case), short slow-client deadlines, an ops token."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("perimeter") / "data",
        header_timeout=TIMEOUT,
        body_timeout=TIMEOUT,
        ops_token=OPS_TOKEN,
        connect_burst=1000,
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Behind a proxy: PUBLIC_URL, one more name in ALLOWED_HOSTS, a small connection limit,
    and the ops pages on an address of their own (without an ops token)."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("perimeter-proxied") / "data",
        public_url=PUBLIC,
        allowed_hosts="intranet.example.test",
        max_connections=6,
        connect_burst=1000,
        ops_address="127.0.0.1:0",
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# -- raw HTTP ---------------------------------------------------------------------------------


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CUT_WITHIN)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a socket timeout fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, (json.loads(body) if body.startswith(b"{") else {})


def _handshake(server: ServerProcess, host: str, origin: str | None = None) -> bytes:
    """A WebSocket upgrade request with exactly this ``Host``; the response head (and body)."""
    lines = [
        "GET /v1/realtime HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    with _connect(server) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 101"):
            sock.settimeout(5)
            with contextlib.suppress(TimeoutError):
                data += _read_all(sock)
        return data


def _get(server: ServerProcess, path: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, headers=headers, timeout=10)


# -- DNS rebinding ----------------------------------------------------------------------------


def test_a_rebinding_host_is_refused_on_requests(server: ServerProcess) -> None:
    evil = f"evil.example:{server.port}"
    for headers in (
        {"Host": evil},
        {"Host": evil, "Origin": f"http://{evil}"},  # what a rebinding page sends
    ):
        for path in ("/v1/settings", "/", "/healthz"):
            r = _get(server, path, **headers)
            assert r.status_code == 400, (path, headers, r.text)
            assert r.json()["error"]["code"] == "invalid_host"
    r = httpx.post(
        server.url + "/v1/auth/signup",
        json={"username": "rebound", "password": "correct horse 1"},
        headers={"Host": evil, "Origin": f"http://{evil}"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    # A foreign Origin sent to the right Host: 403, as before.
    r = _get(server, "/v1/settings", Origin=f"http://evil.example:{server.port}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_two_hosts_are_refused(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n"
        )
        status, body = _status_and_body(_read_all(sock))
    assert (status, body["error"]["code"]) == (400, "invalid_host")  # type: ignore[index]


def test_the_local_names_are_the_servers_own(server: ServerProcess) -> None:
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST.:{port}"):
        for origin in (
            f"http://127.0.0.1:{port}",
            f"http://localhost:{port}",
            f"http://[::1]:{port}",
        ):
            r = _get(server, "/healthz", Host=host, Origin=origin)
            assert r.status_code == 200, (host, origin, r.text)
    # The same names on another port are other sites.
    r = _get(server, "/healthz", Origin=f"http://localhost:{port + 1}")
    assert r.status_code == 403


def test_a_rebinding_host_cannot_open_a_socket(server: ServerProcess) -> None:
    port = server.port
    refused = _handshake(server, f"evil.example:{port}", f"http://evil.example:{port}")
    assert _status_and_body(refused) == (
        400,
        {
            "error": {
                "code": "invalid_host",
                "message": f"the Host 'evil.example:{port}' is not a name of this server; its "
                "operator can add it to LIVESETTINGS_ALLOWED_HOSTS or LIVESETTINGS_PUBLIC_URL",
            }
        },
    )
    refused = _handshake(server, f"127.0.0.1:{port}", f"http://evil.example:{port}")
    status, body = _status_and_body(refused)
    assert (status, body["error"]["code"]) == (403, "forbidden_origin")  # type: ignore[index]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        accepted = _handshake(server, host, f"http://localhost:{port}")
        assert accepted.startswith(b"HTTP/1.1 101"), (host, accepted)
    assert _handshake(server, f"127.0.0.1:{port}").startswith(b"HTTP/1.1 101")  # no Origin


def test_behind_a_proxy_the_public_host_and_the_allowed_hosts_work(
    proxied: ServerProcess,
) -> None:
    for host, origin, status in [
        ("settings.example.test", PUBLIC, 200),
        ("settings.example.test:443", PUBLIC, 200),
        ("intranet.example.test", None, 200),  # LIVESETTINGS_ALLOWED_HOSTS
        (f"127.0.0.1:{proxied.port}", None, 200),  # health checks on loopback
        (f"localhost:{proxied.port}", None, 200),
        (f"10.0.0.5:{proxied.port}", None, 200),  # a proxy that forwards to the address
        ("evil.example", None, 400),
        ("evil.example", "https://evil.example", 400),
        ("settings.example.test", "https://evil.example", 403),
    ]:
        headers = {"Host": host, **({"Origin": origin} if origin else {})}
        assert _get(proxied, "/healthz", **headers).status_code == status, (host, origin)
    assert _handshake(proxied, "settings.example.test", PUBLIC).startswith(b"HTTP/1.1 101")
    assert _handshake(proxied, "evil.example").startswith(b"HTTP/1.1 400")


def test_on_every_interface_without_a_public_url_only_addresses_and_local_names_work(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    proc = ServerProcess(tmp_path_factory.mktemp("wildcard") / "data", host="0.0.0.0")
    proc.start()
    try:
        assert "without LIVESETTINGS_PUBLIC_URL or LIVESETTINGS_ALLOWED_HOSTS" in proc.log_text()
        port = proc.port
        for host, status in [
            (f"192.0.2.10:{port}", 200),  # the machine's address on some network
            (f"localhost:{port}", 200),
            (f"myhost.lan:{port}", 400),  # a name: it could be anyone's
        ]:
            assert _get(proc, "/healthz", Host=host).status_code == status, host
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("host", "settings", "allowed"),
    [
        ("127.0.0.1:8000", {}, True),
        ("localhost", {}, True),
        ("[::1]:8000", {}, True),
        ("203.0.113.9:8000", {}, True),  # an address: no DNS answer makes a browser send it
        ("[2001:db8::1]", {}, True),
        (None, {}, True),  # HTTP/1.0: not a browser
        ("evil.example:8000", {}, False),
        ("127.0.0.1.nip.io:8000", {}, False),
        ("localhost.evil.example", {}, False),
        ("", {}, False),
        ("user@localhost", {}, False),
        ("localhost/x", {}, False),
        ("myhost.lan:8000", {"host": "myhost.lan"}, True),  # the name it is bound to
        ("myhost.lan:8000", {"host": "0.0.0.0"}, False),
        ("Settings.Example.Test", {"public_url": PUBLIC}, True),
        ("intranet.example.test", {"allowed_hosts": "intranet.example.test"}, True),
        ("anything.example", {"allowed_hosts": "*"}, True),
    ],
)
def test_host_allowed(host: str | None, settings: dict[str, str], allowed: bool) -> None:
    assert host_allowed(host, Config.load(env={}, overrides=settings)) is allowed


def test_without_public_url_an_allowed_host_is_its_own_origin() -> None:
    config = Config.load(env={}, overrides={"allowed_hosts": "myhost.lan"})
    assert origin_allowed("http://myhost.lan:8000", "myhost.lan:8000", config, port=8000)
    assert not origin_allowed("http://evil.example:8000", "evil.example:8000", config, port=8000)
    assert not origin_allowed("http://myhost.lan:8000", "evil.example:8000", config, port=8000)
    # The port the connection arrived on decides which local origins are the server's.
    assert origin_allowed("http://localhost:9000", "127.0.0.1:8000", config, port=9000)
    assert not origin_allowed("http://localhost:8000", "127.0.0.1:8000", config, port=9000)


# -- slow clients -----------------------------------------------------------------------------


def _cut_off(sock: socket.socket) -> tuple[float, bytes]:
    start = time.monotonic()
    data = _read_all(sock)
    return time.monotonic() - start, data


def test_a_body_that_stalls_gets_408_within_the_timeout(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"user'
        )
        waited, data = _cut_off(sock)
    assert waited < CUT_WITHIN
    status, body = _status_and_body(data)
    assert status == 408, data
    assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert b"connection: close" in data.lower()


def test_a_trickled_body_gets_408_within_the_timeout(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        start = time.monotonic()
        sock.settimeout(0.5)
        data = b""
        while time.monotonic() - start < CUT_WITHIN:
            try:
                sock.sendall(b" ")  # a byte every half second: never idle, never done
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError("the trickling connection was never cut")
    assert data.startswith(b"HTTP/1.1 408") or data == b"", data
    assert time.monotonic() - start < CUT_WITHIN


def test_a_body_nobody_reads_cannot_hold_the_connection(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nab")
        waited, data = _cut_off(sock)
    assert data.startswith(b"HTTP/1.1 200")  # answered at once, closed once the body is late
    assert waited < CUT_WITHIN


def test_headers_that_never_finish_are_cut_off(server: ServerProcess) -> None:
    with _connect(server) as sock:  # connects and says nothing: closed, like an idle one
        waited, data = _cut_off(sock)
    assert (waited < CUT_WITHIN, data) == (True, b"")

    with _connect(server) as sock:  # begins a request and stops
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0")
        waited, data = _cut_off(sock)
    assert waited < CUT_WITHIN
    status, body = _status_and_body(data)
    assert (status, body["error"]["code"]) == (408, "request_timeout")  # type: ignore[index]

    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        sock.settimeout(0.5)
        data = b""
        n = 0
        while time.monotonic() - start < CUT_WITHIN:
            try:
                sock.sendall(b"X-Slow-%d: 1\r\n" % n)  # a header every half second
                n += 1
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError("the slow headers were never cut off")
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data


def test_a_keep_alive_connection_gets_the_same_deadline(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request, never finished
        waited, data = _cut_off(sock)
    assert waited < CUT_WITHIN
    assert data.startswith(b"HTTP/1.1 408"), data


def test_oversized_headers_get_431(server: ServerProcess) -> None:
    with _connect(server) as sock:
        # Just over the limit in one go (the rest unsent, so the close resets nothing).
        pads = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 4000) for n in range(20))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pads)
        _, data = _cut_off(sock)
    status, body = _status_and_body(data)
    assert (status, body["error"]["code"]) == (431, "headers_too_large")  # type: ignore[index]


def test_sockets_count_toward_the_connection_limit(proxied: ServerProcess) -> None:
    """MAX_CONNECTIONS=6: with five sockets open, the sixth connection gets 503, a request
    or a handshake alike; a socket that leaves makes room."""
    url = f"ws://127.0.0.1:{proxied.port}/v1/realtime"
    host = f"127.0.0.1:{proxied.port}"
    sockets: list[WsClient] = []
    try:
        deadline = time.monotonic() + CUT_WITHIN
        while len(sockets) < 5:  # earlier tests' connections may still be closing
            try:
                sockets.append(WsClient(url))
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        busy = _get(proxied, "/healthz")
        assert busy.status_code == 503
        assert _handshake(proxied, host).startswith(b"HTTP/1.1 503")
        sockets.pop().conn.close()
        deadline = time.monotonic() + CUT_WITHIN
        while _get(proxied, "/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for ws in sockets:
            ws.conn.close()


# -- operations pages -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/redoc", "/openapi.json"])
def test_the_ops_pages_need_the_ops_token(server: ServerProcess, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": OPS_TOKEN}):
        r = _get(server, path, **headers)
        assert r.status_code == 401, (path, headers)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert _get(server, path, Authorization=f"Bearer {OPS_TOKEN}").status_code == 200


def test_health_checks_stay_open(server: ServerProcess) -> None:
    assert _get(server, "/healthz").status_code == 200
    assert _get(server, "/readyz").status_code == 200


def test_the_ops_pages_on_an_address_of_their_own(proxied: ServerProcess) -> None:
    found = re.search(r"livesettings ops pages: (http://\S+)/metrics", proxied.log_text())
    assert found is not None
    ops_url = found.group(1)
    assert ops_url != proxied.url
    # There, without OPS_TOKEN: open, as before; the health checks too, and nothing else.
    assert "livesettings_" in httpx.get(ops_url + "/metrics").text
    for path in ("/openapi.json", "/docs", "/redoc", "/healthz", "/readyz"):
        assert httpx.get(ops_url + path).status_code == 200, path
    for path in ("/", "/v1/settings", "/static/livesettings.js"):
        r = httpx.get(ops_url + path)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), path
    ops_port = int(ops_url.rsplit(":", 1)[1])
    assert _handshake(proxied, "settings.example.test").startswith(b"HTTP/1.1 101")  # main
    with socket.create_connection(("127.0.0.1", ops_port), timeout=CUT_WITHIN) as sock:
        sock.sendall(
            b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 404")
    # On the main address the ops pages are not found.
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert _get(proxied, path).status_code == 404, path


def test_the_perimeter_settings() -> None:
    config = Config.load(env={"LIVESETTINGS_OPS_TOKEN": OPS_TOKEN})
    assert config.redacted()["ops_token"] == "***"
    defaults = Config.load(env={})
    assert (defaults.max_connections, defaults.keep_alive_timeout) == (4096, 5)
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 30.0)
    for env, named in [
        ({"LIVESETTINGS_OPS_TOKEN": "short"}, "LIVESETTINGS_OPS_TOKEN"),
        ({"LIVESETTINGS_ALLOWED_HOSTS": "https://x.example"}, "LIVESETTINGS_ALLOWED_HOSTS"),
        ({"LIVESETTINGS_BODY_TIMEOUT": "0"}, "LIVESETTINGS_BODY_TIMEOUT"),
        ({"LIVESETTINGS_HEADER_TIMEOUT": "-1"}, "LIVESETTINGS_HEADER_TIMEOUT"),
        ({"LIVESETTINGS_MAX_CONNECTIONS": "0"}, "LIVESETTINGS_MAX_CONNECTIONS"),
    ]:
        with pytest.raises(ConfigError, match=named):
            Config.load(env=env)
