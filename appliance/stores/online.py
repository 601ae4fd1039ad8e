"""features.duckdb: the online store, each entity's latest feature values per view.

A mixin pair: ``OnlineTx`` methods join ``FeaturesTx`` (they run inside its transaction,
through ``self.conn``); ``OnlineReads`` methods join ``FeatureStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.

Each materialized view version has a table of its own, ``_online_<view>_<version>``,
typed like the view's rows (entity, ``_event_time``, ``_created_time``, ``_seq``, the
features), one row per entity. ``_online_views`` records, per view version, that table,
its columns, the last materialization and a counter that every materialization raises,
so a reader can tell cheaply whether what it holds in memory is still current.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow as pa

from appliance.stores import migrations
from appliance.stores.results import arrow_table
from appliance.stores.sqltext import ident

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0004_online",
        """
        CREATE TABLE _online_views (
            view TEXT NOT NULL,
            version INTEGER NOT NULL,
            ref TEXT NOT NULL,
            table_name TEXT NOT NULL,
            entity_col TEXT NOT NULL,
            columns TEXT NOT NULL,
            materialized_at TIMESTAMP NOT NULL,
            newest_event TIMESTAMP,
            entities BIGINT NOT NULL,
            counter BIGINT NOT NULL
        )
        """,
    ),
]

# The order that decides which of two rows of an entity is the newer: event time, then
# created time, then ingest sequence (a null created time is the oldest).
KEYS = ("_event_time", "_created_time", "_seq")


def online_table(view: str, version: int) -> str:
    return f"_online_{view}_{version}"


def _newer(new: str, old: str) -> str:
    """SQL: row ``new`` sorts after row ``old`` by (event, created, seq)."""
    e, c, s = (ident(k) for k in KEYS)
    return (
        f"({new}.{e} > {old}.{e} OR ({new}.{e} = {old}.{e} AND "
        f"(coalesce({new}.{c} > {old}.{c}, {new}.{c} IS NOT NULL AND {old}.{c} IS NULL) OR "
        f"({new}.{c} IS NOT DISTINCT FROM {old}.{c} AND {new}.{s} > {old}.{s}))))"
    )


class OnlineTx:
    conn: Any

    def upsert_online(
        self, view: str, version: int, ref: str, entity: str, rows: pa.Table, at: datetime
    ) -> dict[str, Any]:
        """Write each entity's latest row of ``rows`` (entity, ``_event_time``,
        ``_created_time``, ``_seq``, features) into the view version's online table,
        unless the row already there is newer or the same; record the materialization.
        Returns rows written (and the rows themselves), entities held, the newest event
        time and the new counter."""
        table = online_table(view, version)
        ent = ident(entity)
        order = ", ".join(f"{ident(k)} DESC NULLS LAST" for k in KEYS)
        self.conn.register("_online_in", rows)
        try:
            self.conn.execute(
                "CREATE OR REPLACE TEMP TABLE _online_latest AS SELECT * FROM _online_in "
                f"WHERE {ent} IS NOT NULL AND _event_time IS NOT NULL "
                f"QUALIFY row_number() OVER (PARTITION BY {ent} ORDER BY {order}) = 1"
            )
        finally:
            self.conn.unregister("_online_in")
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident(table)} AS SELECT * FROM _online_latest WITH NO DATA"
        )
        self.conn.execute(
            "CREATE OR REPLACE TEMP TABLE _online_new AS SELECT n.* FROM _online_latest n "
            f"LEFT JOIN {ident(table)} o ON n.{ent} = o.{ent} "
            f"WHERE o.{ent} IS NULL OR {_newer('n', 'o')}"
        )
        new = arrow_table(self.conn.execute("SELECT * FROM _online_new"))
        written = new.num_rows
        if written:
            self.conn.execute(
                f"DELETE FROM {ident(table)} WHERE {ent} IN (SELECT {ent} FROM _online_new)"
            )
            self.conn.execute(f"INSERT INTO {ident(table)} BY NAME SELECT * FROM _online_new")
        self.conn.execute("DROP TABLE _online_new")
        self.conn.execute("DROP TABLE _online_latest")
        entities, newest = self.conn.execute(
            f"SELECT count(*), max(_event_time) FROM {ident(table)}"
        ).fetchone()
        counter = self.conn.execute(
            "SELECT coalesce(max(counter), 0) + 1 FROM _online_views"
        ).fetchone()[0]
        columns = [c for c in rows.schema.names if c != entity and c not in KEYS]
        self.conn.execute(
            "DELETE FROM _online_views WHERE view = ? AND version = ?", [view, version]
        )
        self.conn.execute(
            "INSERT INTO _online_views VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [view, version, ref, table, entity, json.dumps(columns), at, newest, entities, counter],
        )
        return {"written": written, "entities": entities, "newest_event": newest,
                "counter": counter, "rows": new}  # fmt: skip


class OnlineReads:
    def query(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]: ...

    def _reading(self) -> Any: ...

    def online_counter(self) -> int:
        """Raised by every materialization: unchanged means nothing new to load."""
        return self.query("SELECT coalesce(max(counter), 0) AS n FROM _online_views")[0]["n"]

    def online_views(self) -> list[dict[str, Any]]:
        """Every materialized view version: ref, table, entity column, columns, the last
        materialization's time, the newest event time, entities held, counter."""
        rows = self.query("SELECT * FROM _online_views ORDER BY view, version")
        for r in rows:
            r["columns"] = json.loads(r["columns"])
        return rows

    def online_rows(self, view: str, version: int) -> pa.Table | None:
        """The whole online table of a view version (None if never materialized)."""
        known = self.query(
            "SELECT table_name FROM _online_views WHERE view = ? AND version = ?", [view, version]
        )
        if not known:
            return None
        with self._reading() as cur:
            return arrow_table(cur.execute(f"SELECT * FROM {ident(known[0]['table_name'])}"))

    def online_point(self, view: str, version: int, entity: str, key: Any) -> dict | None:
        """One entity's row read with a point query (what the benchmark compares)."""
        table = online_table(view, version)
        rows = self.query(f"SELECT * FROM {ident(table)} WHERE {ident(entity)} = ?", [key])
        return rows[0] if rows else None
