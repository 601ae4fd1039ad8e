"""Data commands: ingest and quarantine."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance


@cli.command("ingest")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--table", required=True, help="Table to create or append to.")
@click.option("--entity", required=True, help="Column holding the entity key.")
@click.option("--timestamp", required=True, help="Column holding the event time.")
@json_option
@service
def ingest_cmd(
    app: Appliance, file: Path, table: str, entity: str, timestamp: str, as_json: bool
) -> None:
    """Load a CSV or Parquet file into a feature table, all rows or none.

    \b
    Example:
        falaj ingest loans.csv --table loans --entity customer_id --timestamp event_time
    """
    r = app.ingestion.ingest(file, table, entity, timestamp, cli_actor())
    emit(as_json, r, f"ingested {r['rows']} rows into {r['table']} ({r['total_rows']} rows in all)")
