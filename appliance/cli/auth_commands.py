"""`falaj users` and `falaj tokens`: accounts, roles, enrolment and API tokens."""

from __future__ import annotations

import click

from appliance.auth import USER_ROLES
from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance

role_choice = click.Choice(USER_ROLES)


@cli.group()
def users() -> None:
    """Users of the dashboard and the CLI's `--as`, their roles and enrolment links.

    No password ever goes on a command line: a new user gets a one-time link where they
    set their own.

    \b
    Example:
        falaj users add amina --role data-scientist
        falaj users list
    """


def _link_text(r: dict) -> str:
    return (f"{r['name']} ({r['role']}): open {r['link']} to set the password "
            f"(one use, valid {r['expires_in_hours']} h)")  # fmt: skip


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=role_choice, help="The user's role.")
@json_option
@service
def users_add(app: Appliance, name: str, role: str, as_json: bool) -> None:
    """Add a user with a role and print their one-time enrolment link.

    \b
    Example:
        falaj users add amina --role data-scientist
    """
    r = app.auth.add_user(name, role, cli_actor())
    emit(as_json, r, _link_text(r))


@users.command("list")
@json_option
@service
def users_list(app: Appliance, as_json: bool) -> None:
    """List users, their roles and whether they have enrolled.

    \b
    Example:
        falaj users list --json
    """
    rows = app.auth.users(cli_actor())
    lines = [
        f"{u['name']:<20} {u['role']:<19} "
        f"{'disabled' if u['disabled'] else 'enrolled' if u['enrolled'] else 'not enrolled'}"
        for u in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "no users")


@users.command("role")
@click.argument("name")
@click.argument("role", type=role_choice)
@json_option
@service
def users_role(app: Appliance, name: str, role: str, as_json: bool) -> None:
    """Change a user's role (not your own); their sessions end.

    \b
    Example:
        falaj users role amina ml-engineer
    """
    r = app.auth.set_role(name, role, cli_actor())
    emit(as_json, r, f"{name}: role {r['role']} (was {r['was']})")


@users.command("disable")
@click.argument("name")
@json_option
@service
def users_disable(app: Appliance, name: str, as_json: bool) -> None:
    """Disable a user: their sessions end and they cannot sign in.

    \b
    Example:
        falaj users disable amina
    """
    emit(as_json, app.auth.set_disabled(name, True, cli_actor()), f"{name}: disabled")


@users.command("enable")
@click.argument("name")
@json_option
@service
def users_enable(app: Appliance, name: str, as_json: bool) -> None:
    """Enable a disabled user again.

    \b
    Example:
        falaj users enable amina
    """
    emit(as_json, app.auth.set_disabled(name, False, cli_actor()), f"{name}: enabled")


@users.command("enrol")
@click.argument("name")
@json_option
@service
def users_enrol(app: Appliance, name: str, as_json: bool) -> None:
    """Print a new one-time enrolment link for a user (a forgotten password); earlier
    links stop working.

    \b
    Example:
        falaj users enrol amina
    """
    r = app.auth.reenrol(name, cli_actor())
    emit(as_json, r, _link_text(r))


@cli.group()
def tokens() -> None:
    """API tokens for machine clients (`Authorization: Bearer TOKEN`).

    \b
    Example:
        falaj tokens create scoring --role ml-engineer --model credit --expires 90d
        falaj tokens list
    """


@tokens.command("create")
@click.argument("name")
@click.option("--role", required=True, type=role_choice, help="The token's role.")
@click.option("--model", "models", multiple=True,
              help="Only this model (repeat for more); default all.")  # fmt: skip
@click.option("--expires", help="Lifetime, like 30d or 12h; default never.")
@json_option
@service
def tokens_create(
    app: Appliance, name: str, role: str, models: tuple[str, ...], expires: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Create an API token and print it, once: only its hash is kept.

    \b
    Example:
        falaj tokens create scoring --role ml-engineer --model credit --expires 30d
    """
    r = app.auth.create_token(name, role, cli_actor(), list(models) or None, expires)
    scope = f" for {', '.join(r['models'])}" if r["models"] else ""
    until = f", expires {r['expires_at']}" if r["expires_at"] else ""
    emit(as_json, r, f"{r['token']}\n{r['id']} ({name}, {role}{scope}{until}): shown once, "
                     "keep it now")  # fmt: skip


@tokens.command("list")
@json_option
@service
def tokens_list(app: Appliance, as_json: bool) -> None:
    """List API tokens by id (never their secret).

    \b
    Example:
        falaj tokens list
    """
    rows = app.auth.tokens(cli_actor())
    lines = [
        f"{t['id']:<14} {t['name']:<16} {t['role']:<19} "
        f"{','.join(t['models']) if t['models'] else 'all models':<16} "
        f"{'revoked' if t['revoked_at'] else 'active' if t['active'] else 'expired'}"
        + (f" (expires {t['expires_at']})" if t["expires_at"] and t["active"] else "")
        for t in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "no tokens")


@tokens.command("revoke")
@click.argument("token_id")
@json_option
@service
def tokens_revoke(app: Appliance, token_id: str, as_json: bool) -> None:
    """Revoke an API token by its id (a running server stops taking it within seconds).

    \b
    Example:
        falaj tokens revoke flj_1a2b3c4d
    """
    r = app.auth.revoke_token(token_id, cli_actor())
    emit(as_json, r, f"{r['id']}: revoked" + ("" if r["changed"] else " already"))
