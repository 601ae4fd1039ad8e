"""Training-set and online-store commands: features training-set, features
training-sets, features online, materialize."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.cli.feature_commands import features as features_group
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.features.online import to_json


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal; a callback for the service."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("training set", total=None)

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        yield update


@features_group.command("training-set")
@click.option(
    "--spine",
    required=True,
    type=click.Path(path_type=Path),
    help="Parquet or CSV file: entity column(s), a timestamp column, any others.",
)
@click.option(
    "--features", "features", required=True, help="VIEW:COL,VIEW@2:COL,VIEW:* (comma-separated)."
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="File to write: .parquet or .csv."
)
@click.option(
    "--timestamp",
    default="event_timestamp",
    show_default=True,
    help="The spine's timestamp column.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Ignore feature rows ingested after this ISO time [default: now, recorded].",
)
@click.option("--full-names", is_flag=True, help="Name output columns VIEW__COL.")
@click.option(
    "--created-cutoff",
    is_flag=True,
    help="Also ignore feature rows created after each spine row's time.",
)
@json_option
@service
def training_set(
    app: Appliance, spine: Path, features: str, out: Path, timestamp: str, as_of: str | None,
    full_names: bool, created_cutoff: bool, as_json: bool,
) -> None:  # fmt: skip
    """Build a point-in-time training set from a spine and feature views, and register it.

    For each spine row and view: the latest feature row of that entity at or before the
    row's time (within the view's TTL). Every spine row and column is kept, in order.
    Prints the registered id.

    \b
    Example:
        falaj features training-set --spine labels.parquet \\
            --features loans:income,loans:age --out train.parquet
    """
    with progress_bar(not as_json) as update:
        r = app.training_sets.build(spine, features, cli_actor(), timestamp=timestamp,
                                    as_of=as_of, out=out, full_names=full_names,
                                    created_cutoff=created_cutoff, progress=update)  # fmt: skip
    emit(as_json, r, f"{r['id']}: wrote {r['rows']} rows, {len(r['columns'])} columns to "
                     f"{r['path']} (as of {r['as_of']})")  # fmt: skip


@features_group.command("training-sets")
@click.argument("id_", metavar="[ID]", required=False)
@click.option(
    "--rebuild",
    type=click.Path(path_type=Path),
    default=None,
    help="Build set ID again into this file and check it matches byte for byte.",
)
@json_option
@service
def training_sets(app: Appliance, id_: str | None, rebuild: Path | None, as_json: bool) -> None:
    """List registered training sets, show one, or rebuild one and compare.

    Rebuilding exits 1 when the file differs from the registered one.

    \b
    Example:
        falaj features training-sets
        falaj features training-sets 3f2a9c0d1e2b4a5c --rebuild again.parquet
    """
    actor = cli_actor()
    if rebuild is not None:
        if id_ is None:
            raise BadInput("--rebuild: give the ID of the training set to rebuild")
        r = app.training_sets.rebuild(id_, actor, rebuild)
        emit(as_json, r, f"{id_}: {'matches' if r['matches'] else 'DIFFERS FROM'} the registered "
                         f"file ({r['file_sha256'][:12]}…)")  # fmt: skip
        if not r["matches"]:
            sys.exit(1)
        return
    if id_ is not None:
        r = app.training_sets.show(id_, actor)
        emit(as_json, r, "\n".join(f"{k}: {v}" for k, v in r.items()))
        return
    rows = app.training_sets.list(actor)
    lines = [f"{r['id']}  {r['created_at']}  {r['rows']} rows  {', '.join(r['features'])}  "
             f"{r['path']}" for r in rows]  # fmt: skip
    emit(as_json, rows, "\n".join(lines) or "no training sets registered")


def _entity(text: str) -> dict[str, str]:
    item = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--entity {text!r}: give KEY=VALUE[,KEY=VALUE]")
        item[key.strip()] = value.strip()
    return item


@features_group.command("online")
@click.option("--features", "features", required=True, help="VIEW:COL,VIEW@2:COL,VIEW:*.")
@click.option(
    "--entity",
    "entities",
    multiple=True,
    required=True,
    help="KEY=VALUE[,KEY=VALUE] of one entity; repeat for more.",
)
@click.option("--full-names", is_flag=True, help="Name the values VIEW__COL.")
@json_option
@service
def online(
    app: Appliance, features: str, entities: tuple[str, ...], full_names: bool, as_json: bool
) -> None:
    """Read the latest materialized feature values of entities from the online store.

    A value older than its view's TTL reads as null, flagged OUTSIDE_MAX_AGE.

    \b
    Example:
        falaj features online --features loans:income,loans:age --entity customer_id=c1
    """
    refs = [f.strip() for f in features.split(",") if f.strip()]
    r = to_json(app.online.get_online_features(refs, [_entity(e) for e in entities],
                                               cli_actor(), full_names=full_names))  # fmt: skip
    lines = []
    for item in r["results"]:
        keys = ", ".join(f"{k}={v}" for k, v in item["entity"].items())
        values = ", ".join(
            f"{n}={item['values'][n]}" + ("" if s == "PRESENT" else f" ({s})")
            for n, s in item["statuses"].items()
        )
        lines.append(f"{keys}: {values}")
    emit(as_json, r, "\n".join(lines))


@cli.command("materialize")
@click.argument("view")
@click.option("--since", default=None, help="Only rows with event time at or after this ISO time.")
@json_option
@service
def materialize(app: Appliance, view: str, since: str | None, as_json: bool) -> None:
    """Write each entity's latest row of a view into the online store.

    Guarded by event time: a row older than the one already online never replaces it.

    \b
    Example:
        falaj materialize loans --since 2024-05-01T00:00:00Z
    """
    r = app.online.materialize(view, cli_actor(), since=since)
    emit(as_json, r, f"{r['view']}: {r['rows_written']} rows written, {r['entities']} entities "
                     f"online (newest event {r['newest_event']})")  # fmt: skip
