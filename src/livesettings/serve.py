"""Running the server under uvicorn: the page URL on start, a graceful stop on SIGTERM.

On SIGTERM (or Ctrl-C) the node stops accepting, closes every socket with 1001 so clients
reconnect elsewhere, lets in-flight requests and commits finish, then exits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

import uvicorn

from .config import Config, ops_address
from .server.app import create_app
from .server.http_protocol import timed_protocol
from .server.perimeter import OpsListener
from .server.services import Services

__all__ = ["run_server"]

log = logging.getLogger("livesettings.server")


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, services: Services, settings: Config, ops: OpsListener
    ) -> None:
        super().__init__(config)
        self._services = services
        self._public_url = settings.public_url
        self._allowed_hosts = settings.allowed_hosts
        self._ops_address = settings.ops_address
        self._ops = ops

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        if self._ops_address:
            await self._listen_for_ops(self._ops_address)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        if ":" in shown:
            shown = f"[{shown}]"
        local = f"http://{shown}:{port}/"
        if host in ("0.0.0.0", "::") and not self._public_url and not self._allowed_hosts:
            log.warning(
                "listening on every interface (%s) without LIVESETTINGS_PUBLIC_URL or "
                "LIVESETTINGS_ALLOWED_HOSTS: requests must name this server by IP address or "
                "localhost; any other host name gets 400 invalid_host",
                host,
            )
        if self._public_url:
            # Behind a reverse proxy users open the public URL; operators still need the
            # address the proxy should forward to.
            print(
                f"livesettings is running: open {self._public_url} (listening on {local})",
                flush=True,
            )
        else:
            print(f"livesettings is running: open {local}", flush=True)

    async def _listen_for_ops(self, address: str) -> None:
        """The second listener of ``OPS_ADDRESS``: the same app and protocol (the app tells
        the two apart by the port a connection arrived on)."""
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        host, port = ops_address(address)
        try:
            server = await asyncio.get_running_loop().create_server(
                create_protocol, host=host, port=port, backlog=config.backlog
            )
        except OSError as exc:
            log.error("cannot listen on LIVESETTINGS_OPS_ADDRESS %s: %s", address, exc)
            for other in self.servers:
                other.close()
            await self.lifespan.shutdown()
            sys.exit(1)
        self.servers.append(server)
        bound, self._ops.port = server.sockets[0].getsockname()[:2]
        shown = f"[{bound}]" if ":" in bound else bound
        print(f"livesettings ops pages: http://{shown}:{self._ops.port}/metrics", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self._services.drain()
        await asyncio.sleep(0.05)
        await super().shutdown(sockets)


async def _preflight(config: Config, services: Services) -> None:
    """Check the database before binding a port, so a bad schema is one clear line."""
    from .store import SCHEMA_VERSION, open_store
    from .store.sqlite import SqliteStore

    store = open_store(config.resolved_database_url, keyring=services.keyring)
    try:
        # The embedded store creates or upgrades itself; one a newer release migrated (N+1)
        # is served as it is, since setup refuses anything newer than this release's schema.
        if isinstance(store, SqliteStore):
            version = await store.schema_version() if store.path.exists() else None
            if version is None or version < SCHEMA_VERSION:
                await store.setup()
        await store.open()
    finally:
        await store.close()


def _raise_open_files(connections: int) -> None:
    """Lift the soft limit on open files so ``MAX_CONNECTIONS`` can be reached (1,024 is a
    common default); warn when the hard limit is lower."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    wanted = connections + 256  # the database, the log, the bus...
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            target = soft
    if target < wanted:
        log.warning(
            "the open-file limit (%d) is below LIVESETTINGS_MAX_CONNECTIONS (%d) + 256; "
            "connections beyond it fail; raise it (ulimit -n) or lower the setting",
            target,
            connections,
        )


def run_server(config: Config) -> int:
    """Serve until told to stop; returns the process exit code.

    Raises ``ConfigError``/``StorageError`` before listening when the setup cannot work.
    """
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    services = Services(config)
    asyncio.run(_preflight(config, services))
    app = create_app(config, services=services)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ws="websockets-sansio",
        ws_max_size=config.max_frame_bytes,
        ws_per_message_deflate=False,
        ws_ping_interval=config.ws_ping_interval,
        ws_ping_timeout=config.ws_ping_timeout,
        access_log=config.access_log,
        log_level=config.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=False,
        # Slow clients: see server/http_protocol.py (headers) and perimeter.py (bodies).
        http=timed_protocol(header_timeout=config.header_timeout, body_timeout=config.body_timeout),
        limit_concurrency=config.max_connections,
        timeout_keep_alive=config.keep_alive_timeout,
    )
    _raise_open_files(config.max_connections)
    server = _Server(uv_config, services, config, app.state.ops_listener)
    server.run()
    return 0 if server.started or server.should_exit else 1
