"""Feature-store commands: apply, and the ``features`` group (define, list, show).

Other modules add their commands to the same group: ``from
appliance.cli.feature_commands import features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance


@cli.command("apply")
@click.option(
    "--workspace",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Workspace file to apply [default: HOME/falaj.yaml].",
)
@json_option
@service
def apply_cmd(app: Appliance, workspace: Path | None, as_json: bool) -> None:
    """Validate a workspace file and register its entities, tables and feature views.

    The whole file is checked first: nothing is registered if any part is wrong. A
    changed view becomes a new version (the old one stays resolvable as VIEW@N); an
    unchanged one keeps its version. Views and tables not in the file are kept.

    \b
    Example:
        falaj apply --workspace falaj.yaml
    """
    r = app.views.apply(workspace, cli_actor())
    lines = [f"entity {e['entity']}: {'declared' if e['changed'] else 'unchanged'}"
             for e in r["entities"]]  # fmt: skip
    lines += [f"table {t['table']}: {'declared' if t['changed'] else 'unchanged'}"
              for t in r["tables"]]  # fmt: skip
    for v in r["views"]:
        lines.append(f"view {v['ref']}: {'registered' if v['changed'] else 'unchanged'}")
    kept = r["kept"]["views"]
    if kept:
        lines.append(f"kept (not in the file, not deleted): views {', '.join(kept)}")
    lines.append("changed" if r["changed"] else "nothing changed")
    emit(as_json, r, "\n".join(lines))


@cli.group("features")
def features() -> None:
    """Feature views: define, list and show them (and build training sets, read online
    features).

    \b
    Example:
        falaj features list
    """


@features.command("define")
@click.argument("view")
@click.option("--table", required=True, help="The table whose columns the view gives.")
@click.option("--columns", default=None, help="Comma-separated columns [default: all but keys].")
@click.option("--ttl", default=None, help="How long a value stays valid, like 30d or 12h.")
@json_option
@service
def define_cmd(
    app: Appliance, view: str, table: str, columns: str | None, ttl: str | None, as_json: bool
) -> None:
    """Declare a feature view of a table's columns (a new version if it changed).

    \b
    Example:
        falaj features define customer_profile --table transactions --columns amount,channel --ttl 30d
    """
    r = app.views.define(view, table, cli_actor(), columns=columns, ttl=ttl)
    emit(as_json, r, f"view {r['ref']}: {'registered' if r['changed'] else 'unchanged'}")


@features.command("list")
@json_option
@service
def list_cmd(app: Appliance, as_json: bool) -> None:
    """List feature views: latest version, kind, entity, source and features.

    \b
    Example:
        falaj features list --json
    """
    rows = app.views.list(cli_actor())
    lines = [
        f"{r['view']}@{r['version']}  {r['kind']}  entity {r['entity']}  "
        f"{'table ' + r['table'] if r['table'] else 'sql'}  ttl {r['ttl'] or '-'}  "
        f"{', '.join(r['features']) or '(columns known after the first ingest)'}"
        for r in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "no feature views declared")


def _show_text(r: dict[str, Any]) -> str:
    lines = [
        f"view {r['ref']} ({r['kind']}), fingerprint {r['fingerprint'][:16]}",
        f"entity: {r['entity']}   event time: {r['event_time']}   "
        f"created time: {r['created_time'] or '(ingest time)'}",
        f"source: {'table ' + r['table'] if r['table'] else 'sql: ' + r['definition']['sql']}",
        f"ttl: {r['ttl'] or 'none'}",
        f"registered {r['created_at']} by {r['created_by']}",
        "features:",
        *(f"  {c}  {t or '?'}" for c, t in r["features"].items()),
    ]
    if r["note"]:
        lines.append(f"note: {r['note']}")
    lines.append("versions: " + ", ".join(f"@{v['version']}" for v in r["versions"]))
    return "\n".join(lines)


@features.command("show")
@click.argument("ref", metavar="VIEW[@N]")
@json_option
@service
def show_cmd(app: Appliance, ref: str, as_json: bool) -> None:
    """Show a feature view version: definition, features and types, entity, TTL,
    fingerprint, who registered it and when, and its versions.

    \b
    Example:
        falaj features show customer_profile@2
    """
    r = app.views.show(ref, cli_actor())
    emit(as_json, r, _show_text(r))
