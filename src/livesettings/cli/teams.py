"""Teams for operators (DESIGN §11): ``team list|create|add|remove|delete``.

The CLI acts as an operator: it may do anything a team's owner may, except leave a team
without an owner (409 ``last_owner``). Each change is audited. On PostgreSQL the change's
NOTIFY reaches every node listening on the database (the default bus), which updates the
member's sockets; with another bus a running server learns of it when the user next reads.
"""

from __future__ import annotations

from typing import Any

import click

from ..audit import audit, audit_trail
from ..config import Config
from ..errors import NotFound
from ..store import Store
from ..store.teams import MembershipChange, TeamRow
from ..teams import ROLES, new_team_id, parse_team_id
from ._common import database_options, load_config, opened_store, plural, run

__all__ = ["team"]


async def _user_id(store: Store, ref: str) -> str:
    """A built-in user by username, else the text as a user id (identity-provider users
    have no account row)."""
    row = await store.get_user_by_username(ref) or await store.get_user(ref)
    return ref if row is None else row.user_id


async def _team_id(ref: str) -> str:
    try:
        return parse_team_id(ref)
    except NotFound:
        raise NotFound(f"{ref!r} is not a team id (see `livesettings team list`)") from None


def _audited(config: Config, event: str, **fields: Any) -> None:
    with audit_trail(config.resolved_audit_log):
        audit(event, by="cli", **fields)


@click.group()
def team() -> None:
    """Manage teams: shared settings documents with members and roles."""


@team.command("list")
@click.option("--user", "user_ref", help="Only this user's teams (username or user id).")
@database_options
@click.pass_context
def team_list(
    ctx: click.Context, user_ref: str | None, data_dir: str | None, database_url: str | None
) -> None:
    """List every team (id, members, name), or one user's teams with their role."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go() -> list[TeamRow]:
        async with opened_store(config, None) as store:
            if user_ref is None:
                return await store.teams.all_teams()
            return await store.teams.teams_of(await _user_id(store, user_ref))

    rows = run(go)
    if not rows:
        click.echo("no teams")
        return
    for row in rows:
        what = row.role if user_ref is not None else plural(row.members or 0, "member")
        click.echo(f"{row.team_id}  {what:<11}  {row.name}")
    click.echo(plural(len(rows), "team"))


@team.command("create")
@click.argument("name")
@click.option("--owner", "owner_ref", required=True, help="The first owner (username or id).")
@database_options
@click.pass_context
def team_create(
    ctx: click.Context, name: str, owner_ref: str, data_dir: str | None, database_url: str | None
) -> None:
    """Create a team named NAME whose owner is --owner."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)

    async def go() -> TeamRow:
        async with opened_store(config, None, setup=True) as store:
            owner = await _user_id(store, owner_ref)
            return await store.teams.create_team(
                new_team_id(), name, owner, max_teams=config.max_teams_per_user
            )

    row = run(go)
    _audited(config, "team_created", team_id=row.team_id)
    click.echo(f"created team {row.name} (id {row.team_id})")


@team.command("add")
@click.argument("team_ref", metavar="TEAM")
@click.argument("user_ref", metavar="USER")
@click.option("--role", type=click.Choice(ROLES), default="member", show_default=True)
@database_options
@click.pass_context
def team_add(
    ctx: click.Context,
    team_ref: str,
    user_ref: str,
    role: str,
    data_dir: str | None,
    database_url: str | None,
) -> None:
    """Add USER to TEAM with --role, or change their role."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    team_id = run(lambda: _team_id(team_ref))

    async def go() -> MembershipChange:
        async with opened_store(config, None) as store:
            user_id = await _user_id(store, user_ref)
            return await store.teams.set_member(
                team_id,
                None,
                user_id,
                role,
                max_members=config.max_team_members,
                max_teams=config.max_teams_per_user,
            )

    change = run(go)
    if not change.changed:
        click.echo(f"{user_ref} is already {role} of team {team_id}")
        return
    event = "team_member_added" if change.before is None else "team_member_role_changed"
    _audited(config, event, team_id=team_id, user_id=change.user_id, role=role)
    click.echo(f"{user_ref} is now {role} of team {team_id}")


@team.command("remove")
@click.argument("team_ref", metavar="TEAM")
@click.argument("user_ref", metavar="USER")
@database_options
@click.pass_context
def team_remove(
    ctx: click.Context, team_ref: str, user_ref: str, data_dir: str | None, database_url: str | None
) -> None:
    """Remove USER from TEAM (never its last owner)."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    team_id = run(lambda: _team_id(team_ref))

    async def go() -> MembershipChange:
        async with opened_store(config, None) as store:
            return await store.teams.remove_member(team_id, None, await _user_id(store, user_ref))

    change = run(go)
    _audited(config, "team_member_removed", team_id=team_id, user_id=change.user_id)
    click.echo(f"removed {user_ref} from team {team_id}")


@team.command("delete")
@click.argument("team_ref", metavar="TEAM")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@database_options
@click.pass_context
def team_delete(
    ctx: click.Context, team_ref: str, yes: bool, data_dir: str | None, database_url: str | None
) -> None:
    """Delete TEAM with its settings; its secrets are shredded with its data key."""
    config = load_config(ctx, data_dir=data_dir, database_url=database_url)
    team_id = run(lambda: _team_id(team_ref))
    if not yes:
        click.confirm(f"Delete team {team_id} with its settings and secrets?", abort=True, err=True)

    async def go() -> list[str]:
        async with opened_store(config, None) as store:
            return await store.teams.delete_team(team_id, None)

    members = run(go)
    _audited(config, "team_deleted", team_id=team_id, members=len(members))
    click.echo(f"deleted team {team_id} ({plural(len(members), 'member')})")
