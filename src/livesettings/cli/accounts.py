"""Built-in users and tokens: ``user add|list|remove|passwd|admin`` and ``token issue|revoke``."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import uuid

import click

from ..accounts import remove_account
from ..audit import audit, audit_trail
from ..auth import (
    MAX_SERVICE_TOKEN_TTL,
    SERVICE_TOKEN_TTL,
    PasswordHasher,
    TokenIssuer,
    validate_password,
    validate_username,
)
from ..config import Config
from ..errors import ConfigError, NotFound, ValidationError
from ..store import Store, UserRow
from ._common import (
    EXIT_USAGE,
    database_options,
    exits,
    fail,
    load_config,
    load_keys,
    opened_store,
    plural,
    run,
)

__all__ = ["token", "user"]


def _hasher(config: Config) -> PasswordHasher:
    return PasswordHasher(time_cost=config.argon2_time_cost, memory_cost=config.argon2_memory_cost)


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt="Repeat the password"
        )
    try:
        return validate_password(password)
    except ValidationError as exc:
        fail(exc.message)


async def _find(store: Store, ref: str) -> UserRow | None:
    """A built-in user by username, else by user id."""
    return await store.get_user_by_username(ref) or await store.get_user(ref)


def _look_up(config: Config, ref: str) -> UserRow | None:
    """:func:`_find` in a store opened for this one look-up."""

    async def find() -> UserRow | None:
        async with opened_store(config, None) as store:
            return await _find(store, ref)

    return run(find)


async def _end_sessions(store: Store, user_id: str) -> int:
    """Void the user's refresh tokens and every access token issued until now; servers
    close the user's sockets when they next poll the revocations."""
    revoked = await store.revoke_refresh_tokens(user_id)
    await store.revoke_sessions(user_id, time.time_ns() // 1_000_000)
    return revoked


_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from one line of stdin."
)


@click.group()
def user() -> None:
    """Manage built-in users (username and password)."""


@user.command("add")
@click.argument("username")
@_password_stdin
@click.option("--admin", is_flag=True, help="Make the user an admin (the /admin dashboard).")
@database_options
@click.pass_context
def user_add(
    ctx: click.Context,
    username: str,
    password_stdin: bool,
    admin: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Create a user (password prompted, or --password-stdin).

    --admin makes the user an admin of the /admin dashboard (`user admin` changes it later).
    """
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    try:
        validate_username(username)
    except ValidationError as exc:
        fail(exc.message)

    async def taken() -> bool:
        # The embedded default sets itself up, as `serve` does (with its generated key file:
        # adopting a seed table seals its API keys); PostgreSQL needs no keys for accounts.
        keyring = None if config.is_postgres else load_keys(config)
        async with opened_store(config, keyring, setup=True) as store:
            return await store.get_user_by_username(username) is not None

    # Checked before the prompt: no one should type a password for a name that is taken.
    if run(taken):
        fail(f"the username {username!r} is taken")
    password_hash = _hasher(config).hash(_read_password(password_stdin))

    async def go() -> UserRow:
        async with opened_store(config, None) as store:
            row = await store.create_user(str(uuid.uuid4()), username, password_hash)
            if admin:
                await store.set_admin(row.user_id, True)
                audit("admin_granted", user_id=row.user_id, by="cli")
            return row

    with audit_trail(config.resolved_audit_log) if admin else contextlib.nullcontext():
        row = run(go)
    click.echo(f"created {'admin' if admin else 'user'} {row.username} (id {row.user_id})")


@user.command("list")
@database_options
@click.pass_context
def user_list(ctx: click.Context, data_dir: str | None, database_url: str | None) -> None:
    """List built-in users: username, user id, creation time, and "admin" for admins."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go() -> tuple[list[UserRow], set[str]]:
        async with opened_store(config, None) as store:
            return await store.list_users(), await store.admin_ids()

    rows, admins = run(go)
    if not rows:
        click.echo("no users")
        return
    width = max(len("USERNAME"), *(len(row.username) for row in rows))
    id_width = max(len("USER ID"), *(len(row.user_id) for row in rows))
    created_width = max(len("CREATED"), *(len(row.created_at) for row in rows))
    click.echo(
        f"{'USERNAME':<{width}}  {'USER ID':<{id_width}}  {'CREATED':<{created_width}}  ADMIN"
    )
    for row in rows:
        line = (
            f"{row.username:<{width}}  {row.user_id:<{id_width}}  {row.created_at:<{created_width}}"
        )
        click.echo(line + ("  admin" if row.user_id in admins else ""))
    listed_admins = sum(1 for row in rows if row.user_id in admins)
    click.echo(plural(len(rows), "user") + (f", {listed_admins} admin" if listed_admins else ""))


@user.command("admin")
@click.argument("user_ref", metavar="USER")
@click.option(
    "--on/--off",
    "on",
    default=None,
    help="Grant (--on) or take back (--off) the admin flag.",
)
@database_options
@click.pass_context
def user_admin(
    ctx: click.Context,
    user_ref: str,
    on: bool | None,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Grant or take back a built-in user's admin flag (the /admin dashboard).

    USER is a username or a user id. Running servers see the change within seconds. Users
    of an identity provider are admins by LIVESETTINGS_ADMIN_CLAIM instead.
    """
    if on is None:
        fail("give --on (make USER an admin) or --off (take it back)", EXIT_USAGE)
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go() -> tuple[UserRow | None, bool]:
        async with opened_store(config, None) as store:
            row = await _find(store, user_ref)
            if row is None:
                return None, False
            changed = await store.set_admin(row.user_id, on)
            if changed:
                audit("admin_granted" if on else "admin_revoked", user_id=row.user_id, by="cli")
            return row, changed

    with audit_trail(config.resolved_audit_log):
        row, changed = run(go)
    if row is None:
        fail(
            f"no built-in user {user_ref!r} (users of an identity provider are admins by "
            "LIVESETTINGS_ADMIN_CLAIM)"
        )
    if on:
        state = "is now an admin" if changed else "was already an admin"
    else:
        state = "is no longer an admin" if changed else "was not an admin"
    click.echo(f"{row.username} (id {row.user_id}) {state}")


@user.command("remove")
@click.argument("user_ref", metavar="USER")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@database_options
@click.pass_context
def user_remove(
    ctx: click.Context, user_ref: str, yes: bool, data_dir: str | None, database_url: str | None
) -> None:
    """Delete a user, its settings and secrets; end its sessions.

    USER is a username or a user id (also of a user from an identity provider). The user
    leaves every team first; a team's last owner is refused (hand it over or delete it).
    """
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    if not yes:
        click.confirm(f"Remove {user_ref} with all its settings and secrets?", abort=True, err=True)

    async def go() -> str:
        async with opened_store(config, None) as store:
            row = await _find(store, user_ref)
            user_id = user_ref if row is None else row.user_id
            # The rule DELETE /v1/account follows too (livesettings.accounts).
            end = functools.partial(_end_sessions, store)
            await remove_account(store, user_id, end, known=row is not None, by="cli")
            return user_id

    with audit_trail(config.resolved_audit_log):
        user_id = run(go)
    click.echo(f"removed user {user_ref} (id {user_id}); its sessions are ended")


@user.command("passwd")
@click.argument("user_ref", metavar="USER")
@_password_stdin
@database_options
@click.pass_context
def user_passwd(
    ctx: click.Context,
    user_ref: str,
    password_stdin: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Set a user's password and end its sessions."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    # Look the user up before prompting: no one should type a password for a typo.
    row = _look_up(config, user_ref)
    if row is None:
        fail(f"no user {user_ref!r}")
    password_hash = _hasher(config).hash(_read_password(password_stdin))

    async def go() -> int:
        async with opened_store(config, None) as store:
            if not await store.set_password(row.user_id, password_hash):
                raise NotFound(f"no user {user_ref!r}")
            return await _end_sessions(store, row.user_id)

    revoked = run(go)
    click.echo(
        f"changed the password of {row.username}; {plural(revoked, 'refresh token')} "
        "revoked, its sessions are ended"
    )


@click.group()
def token() -> None:
    """Issue and revoke access tokens."""


@token.command("issue")
@click.option("--user", "user_ref", help="Username or user id (the token's sub).")
@click.option(
    "--service", is_flag=True, help="A service token (role service): any user's settings."
)
@click.option(
    "--anon",
    is_flag=True,
    help="The anon key of the Supabase-compatible endpoints (role anon, no user): what "
    "createClient(url, anonKey) takes. It grants no settings; it lives 90 days by default.",
)
@click.option(
    "--ttl",
    type=click.IntRange(min=1),
    help=(
        "Lifetime in seconds [a user token: LIVESETTINGS_ACCESS_TOKEN_TTL, 900; "
        f"a service token: {SERVICE_TOKEN_TTL}]; at most {SERVICE_TOKEN_TTL} (1 day)."
    ),
)
@click.option(
    "--allow-long-ttl",
    is_flag=True,
    help=f"Allow a --ttl over 1 day, up to {MAX_SERVICE_TOKEN_TTL} (90 days).",
)
@database_options
@click.pass_context
def token_issue(
    ctx: click.Context,
    user_ref: str | None,
    service: bool,
    anon: bool,
    ttl: int | None,
    allow_long_ttl: bool,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Print a signed access token, and nothing else.

    HS256 with the configured secret; --service makes a service token (role service)
    whose subject is USER as given; --anon prints the anon key (no user) that Supabase
    clients send as their apikey. Each token has its own jti, for `token revoke --jti`.
    """
    if anon and (user_ref is not None or service):
        fail("--anon names no user: give it without --user and --service", EXIT_USAGE)
    if not anon and user_ref is None:
        fail("give --user USER (or --anon for the anon key)", EXIT_USAGE)
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    if ttl is None and service:
        ttl = SERVICE_TOKEN_TTL
    if not anon:
        _check_ttl(ttl, allow_long_ttl)
    elif ttl is not None and ttl > MAX_SERVICE_TOKEN_TTL:
        fail(
            f"--ttl {ttl} is longer than 90 days ({MAX_SERVICE_TOKEN_TTL} s), the most an anon "
            "key may live",
            EXIT_USAGE,
        )
    from ..config_loaders import load_signing  # the secret exactly as the server reads it

    with exits():
        secret, _ = load_signing(config)
        if secret is None:
            raise ConfigError(
                "token issue signs HS256 tokens and no LIVESETTINGS_JWT_SECRET is configured; "
                "with an identity provider, issue tokens there"
            )
        issuer = TokenIssuer(
            secret,
            ttl_seconds=config.access_token_ttl,
            issuer=config.jwt_issuer,
            audience=config.jwt_audience,
        )
    if anon:
        from ..server.compat.keys import ANON_KEY_TTL, issue_anon_key  # the server's rule

        key, _ = issue_anon_key(
            secret,
            ttl_seconds=ttl or ANON_KEY_TTL,
            issuer=config.jwt_issuer,
            audience=config.jwt_audience,
        )
        click.echo(key)
        return
    assert user_ref is not None
    subject = user_ref
    if not service:
        row = _look_up(config, user_ref)
        if row is None:
            fail(f"no user {user_ref!r} (a service token, --service, may name any subject)")
        subject = row.user_id
    try:
        signed, _ = issuer.issue(subject, role="service" if service else None, ttl_seconds=ttl)
    except ValueError as exc:
        fail(str(exc))
    click.echo(signed)


def _check_ttl(ttl: int | None, allow_long: bool) -> None:
    """A token the CLI issues lives a day at most, or 90 days with ``--allow-long-ttl``: a
    leaked token is good until it expires or is revoked by jti."""
    if ttl is None or ttl <= SERVICE_TOKEN_TTL:
        return
    if not allow_long:
        fail(
            f"--ttl {ttl} is longer than 1 day ({SERVICE_TOKEN_TTL} s); pass --allow-long-ttl "
            f"for up to 90 days ({MAX_SERVICE_TOKEN_TTL} s), and plan to revoke or rotate it",
            EXIT_USAGE,
        )
    if ttl > MAX_SERVICE_TOKEN_TTL:
        fail(
            f"--ttl {ttl} is longer than 90 days ({MAX_SERVICE_TOKEN_TTL} s), the most any "
            "token may live; servers refuse longer service tokens",
            EXIT_USAGE,
        )


@token.command("revoke")
@click.option("--jti", help="Revoke the one token with this jti claim.")
@click.option(
    "--sub",
    help="Revoke every token of this subject (a service, or a user id) issued until now.",
)
@database_options
@click.pass_context
def token_revoke(
    ctx: click.Context,
    jti: str | None,
    sub: str | None,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Revoke one token (--jti) or every token of a subject (--sub).

    Every running server refuses them within a second or two and closes the sockets and
    event streams they opened. --sub also revokes a built-in user's refresh tokens; tokens
    issued after it are valid.
    """
    if (jti is None) == (sub is None):
        fail("give exactly one of --jti or --sub", EXIT_USAGE)
    for option, value in (("--jti", jti), ("--sub", sub)):
        if value is not None and not 0 < len(value) <= _MAX_REVOKED_ID:
            fail(f"{option} must be 1 to {_MAX_REVOKED_ID} characters", EXIT_USAGE)
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    # Kept until any token carrying it has expired: the longest a token may live.
    keep = max(MAX_SERVICE_TOKEN_TTL, config.access_token_ttl) + config.jwt_leeway
    until = int(time.time()) + keep

    async def go() -> int:
        async with opened_store(config, None) as store:
            if jti is not None:
                await store.revoke_token(jti, until)
                return 0
            assert sub is not None
            return await _end_sessions(store, sub)

    refresh = run(go)
    if jti is not None:
        click.echo(f"revoked the token with jti {jti}; servers refuse it within seconds")
    else:
        click.echo(
            f"revoked every token of {sub} issued until now"
            + (f" and {plural(refresh, 'refresh token')}" if refresh else "")
            + "; servers refuse them within seconds"
        )


_MAX_REVOKED_ID = 256
