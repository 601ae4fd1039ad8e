"""control.db: declared tables (keys, created-time column) and their data contracts.

A mixin pair: ``TableSpecTx`` methods join ``ControlTx`` (they run inside its
transaction, through ``self.conn``); ``TableSpecReads`` methods join ``ControlStore``
(through ``self.query``). Its migrations are appended to the store's list, in the order
the store names them. A spec is kept as the JSON of ``TableSpec.to_dict``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0004_table_specs",
        """
        CREATE TABLE table_specs (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        )
        """,
    ),
]


class TableSpecTx:
    conn: Any

    def put_table_spec(self, name: str, spec: dict[str, Any], actor: object) -> bool:
        """Store a table's spec; False when it is already stored unchanged."""
        body = json.dumps(spec, sort_keys=True)
        row = self.conn.execute("SELECT spec FROM table_specs WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] == body:
            return False
        self.conn.execute(
            "INSERT INTO table_specs VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET spec = excluded.spec, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by",
            (name, body, datetime.now(UTC).isoformat(timespec="seconds"), str(actor)),
        )
        return True


class TableSpecReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def table_spec(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT spec FROM table_specs WHERE name = ?", (name,))
        return json.loads(rows[0]["spec"]) if rows else None

    def table_specs(self) -> dict[str, dict[str, Any]]:
        rows = self.query("SELECT name, spec FROM table_specs ORDER BY name")
        return {r["name"]: json.loads(r["spec"]) for r in rows}
