"""Registered schema migrations, each applied once in one transaction with its record.

A store lists its migrations in order; ``apply`` runs those not yet recorded in the
store's ``_migrations`` table. Adding a migration means appending to the list: never
edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance import faults


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str  # one or more statements separated by ';'


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";\n") if s.strip()]


def apply(
    conn: Any,
    migrations: Sequence[Migration],
    begin: Callable[[], None],
    commit: Callable[[], None],
    rollback: Callable[[], None],
) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for m in migrations:
        if m.name in done:
            continue
        begin()
        try:
            for stmt in statements(m.sql):
                conn.execute(stmt)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                [m.name, datetime.now(UTC).isoformat()],
            )
            commit()
            faults.point("migrate.applied")
        except Exception:
            rollback()
            raise
        applied.append(m.name)
    return applied


def recorded(conn: Any) -> list[str]:
    """The names of the migrations a store has applied, in order."""
    return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
