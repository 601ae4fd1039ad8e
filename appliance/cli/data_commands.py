"""Data commands: ingest, quality reports and the quarantine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int | None, str], None] | None]:
    """A rich progress bar on stderr while it is a terminal; else no callback."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]}"),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as bar:  # fmt: skip
        task = bar.add_task(label, total=None, n="")

        last = [0]

        def update(done: int, total: int | None, unit: str) -> None:
            if done < last[0]:  # a second pass: types were inferred, now rows load
                bar.update(task, description=f"{label} (loading)")
            last[0] = done
            n = f"{done / (1 << 20):,.1f} MiB" if unit == "bytes" else f"{done:,} rows"
            bar.update(task, completed=done, total=total, n=n)

        yield update


@cli.command("ingest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--table", required=True, help="Table to create or append to.")
@click.option("--entity", default=None, help="Column holding the entity key "
              "[default: the workspace's or the table's].")  # fmt: skip
@click.option("--timestamp", default=None, help="Column holding the event time "
              "[default: the workspace's or the table's].")  # fmt: skip
@click.option("--created", default=None, help="Column holding the created time "
              "(ties on event time go to the latest) [default: the ingest time].")  # fmt: skip
@click.option("--from-table", "from_table", default=None,
              help="The table to read from a SQLite or DuckDB file.")  # fmt: skip
@json_option
@service
def ingest_cmd(
    app: Appliance, file: Path, table: str, entity: str | None, timestamp: str | None,
    created: str | None, from_table: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Load a file into a feature table: CSV, Parquet, NDJSON (.jsonl), Arrow IPC
    (.arrow), or a table of a SQLite or DuckDB file (--from-table). Rows are checked
    against the table's contract (declared with `falaj apply`): all land, or the input
    is refused, or (policy quarantine) the failing rows go to the quarantine.

    \b
    Example:
        falaj ingest loans.csv --table loans --entity customer_id --timestamp event_time
        falaj ingest shop.sqlite --from-table orders --table orders --entity id --timestamp ts
    """
    with progress_bar(f"ingest {file.name}") as progress:
        r = app.ingestion.ingest(file, table, entity, timestamp, cli_actor(), created=created,
                                 from_table=from_table, progress=progress)  # fmt: skip
    text = f"ingested {r['rows']} rows into {r['table']} ({r['total_rows']} rows in all)"
    if r["quarantined"]:
        rules = ", ".join(f"{k} {v}" for k, v in r["report"]["rules"].items())
        text += (f"; {r['quarantined']} rows quarantined ({rules}): "
                 f"falaj quarantine show {r['batch']}")  # fmt: skip
    emit(as_json, r, text)


@cli.command("quality")
@click.option("--table", default=None, help="Only this table's reports.")
@click.option("--limit", default=50, show_default=True, help="How many reports, newest first.")
@json_option
@service
def quality_cmd(app: Appliance, table: str | None, limit: int, as_json: bool) -> None:
    """Show ingest quality reports, newest first: rows in, landed, quarantined, rows
    breaking each rule, and how old the newest event was.

    \b
    Example:
        falaj quality --table transactions --limit 10
    """
    rows = app.ingestion.quality_reports(cli_actor(), table=table, limit=limit)
    lines = [
        f"{r['reported_at']}  {r['table']}  {r['kind']}  batch {r['batch'][:12]}  "
        f"in {r['rows_in']}  landed {r['rows_landed']}  quarantined {r['rows_quarantined']}"
        + ("  " + ", ".join(f"{k} {v}" for k, v in r["rules"].items()) if r["rules"] else "")
        for r in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "no quality reports")


@cli.group("quarantine")
def quarantine() -> None:
    """Rows that broke a table's contract: list, show, release or drop them.

    \b
    Example:
        falaj quarantine list
    """


@quarantine.command("list")
@click.option("--table", default=None, help="Only this table's rows.")
@click.option("--batch", default=None, help="Only this ingest batch's rows.")
@json_option
@service
def quarantine_list(app: Appliance, table: str | None, batch: str | None, as_json: bool) -> None:
    """List quarantined rows per ingest batch: table, time, rows and the rules broken.

    \b
    Example:
        falaj quarantine list --table transactions
    """
    rows = app.quarantine.list(cli_actor(), table=table, batch=batch)
    lines = [
        f"{r['batch']}  {r['table']}  {r['quarantined_at']}  {r['rows']} rows "
        f"(ids {r['ids'][0]}-{r['ids'][1]})  "
        + ", ".join(f"{k} {v}" for k, v in r["rules"].items())
        for r in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "the quarantine is empty")


@quarantine.command("show")
@click.argument("ref", metavar="BATCH_OR_IDS")
@click.option("--limit", default=100, show_default=True, help="Show at most this many rows.")
@json_option
@service
def quarantine_show(app: Appliance, ref: str, limit: int, as_json: bool) -> None:
    """Show quarantined rows (of a batch, or by id: 17 or 17,18) with values and reasons.

    \b
    Example:
        falaj quarantine show 17,18
    """
    r = app.quarantine.show(ref, cli_actor(), limit=limit)
    lines = [f"table {r['table']}: {r['total']} rows held"
             + (f", the first {len(r['rows'])} shown" if r["total"] > len(r["rows"]) else "")]  # fmt: skip
    for row in r["rows"]:
        values = ", ".join(f"{k}={v!r}" for k, v in row["values"].items())
        lines.append(f"id {row['id']} (row {row['row']}): {values}")
        lines.extend(f"    {m}" for m in row["reasons"])
    emit(as_json, r, "\n".join(lines))


@quarantine.command("release")
@click.argument("ref", metavar="BATCH_OR_IDS")
@click.option("--force", is_flag=True,
              help="Land every row whose values convert, whatever the contract says.")  # fmt: skip
@json_option
@service
def quarantine_release(app: Appliance, ref: str, force: bool, as_json: bool) -> None:
    """Re-check quarantined rows against the table's current contract and land those
    that pass; the others stay (with --force, all that convert land).

    \b
    Example:
        falaj quarantine release 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7 --force
    """
    r = app.quarantine.release(ref, cli_actor(), force=force)
    lines = [f"released {r['released']} rows into {r['table']}; {r['kept']} stay quarantined"]
    for k in r["still_failing"]:
        lines.append(f"  id {k['id']}: {'; '.join(k['reasons'])}")
    emit(as_json, r, "\n".join(lines))


@quarantine.command("drop")
@click.argument("ref", metavar="BATCH_OR_IDS")
@json_option
@service
def quarantine_drop(app: Appliance, ref: str, as_json: bool) -> None:
    """Delete quarantined rows for good.

    \b
    Example:
        falaj quarantine drop 17,18
    """
    r = app.quarantine.drop(ref, cli_actor())
    emit(as_json, r, f"dropped {r['dropped']} quarantined rows of {r['table']}")
