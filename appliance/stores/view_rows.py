"""features.duckdb: reading a feature view's rows (columns of a table, an SQL query)
for training sets and the online store.

A mixin: ``ViewRowReads`` methods join ``FeatureStore`` (through ``self.query`` and
``self._reading``). Nothing here writes.

Every read gives an Arrow table whose first four columns are the entity column,
``_event_time`` and ``_created_time`` (TIMESTAMP, UTC-naive) and ``_seq`` (BIGINT),
followed by the features, fetched from DuckDB as Arrow without a row-by-row copy.

An SQL view runs as ``WITH <table> AS (its user columns[, ingested by as_of]) ...
SELECT ... FROM (<the view's SELECT>)``: every table it names is shadowed by a CTE of
the same name, so it sees neither internal columns nor rows ingested after ``as_of``.
Its ``_created_time`` is its declared created-time column, else its event time; its
``_seq`` numbers each entity's output rows from 1 in (event time, created time, feature
values) order, so the same data always gives the same sequence, whatever the filters
(``_seq`` only ever breaks ties between rows of one entity).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from appliance.errors import BadInput
from appliance.stores.sqltext import ident

# The ingest sequence: a unique, increasing number per row, in ingest order.
SEQ_COLUMN = "_seq"
INGESTED = "_ingested_at"
ENTITY_KEYS = "_view_entities"


def _arrow(result: duckdb.DuckDBPyConnection) -> pa.Table:
    return result.fetch_arrow_table()


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from _nodes(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _nodes(v)


def parse_view_sql(sql: str, where: str) -> list[str]:
    """Check that ``sql`` is one SELECT statement reading only plain table names; the
    names it reads (CTEs it defines left out). Nothing is executed."""
    if not isinstance(sql, str) or not sql.strip():
        raise BadInput(f"{where}: expected an SQL SELECT statement")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadInput(f"{where}: does not parse: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise BadInput(f"{where}: must be exactly one SELECT statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        raise BadInput(f"{where}: must be a SELECT statement, not {kind}")
    # The parse tree, from DuckDB's own parser (an in-memory connection, no store).
    con = duckdb.connect(config={"autoload_known_extensions": False,
                                 "autoinstall_known_extensions": False})  # fmt: skip
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    finally:
        con.close()
    if tree.get("error") and "Only SELECT" in str(tree.get("error_message")):
        raise BadInput(
            f"{where}: must be a plain SELECT statement (this one, like PRAGMA or PIVOT, "
            "cannot be checked to read only feature tables)"
        )
    if tree.get("error"):
        raise BadInput(f"{where}: does not parse: {tree.get('error_message', 'unknown error')}")
    nodes = list(_nodes(tree))
    ctes = {e["key"] for n in nodes if isinstance(n.get("cte_map"), dict)
            for e in n["cte_map"].get("map", [])}  # fmt: skip
    tables: list[str] = []
    for n in nodes:
        if n.get("type") == "TABLE_FUNCTION":
            name = (n.get("function") or {}).get("function_name", "?")
            raise BadInput(
                f"{where}: may read only feature tables, not the table function {name}()"
            )
        if n.get("type") == "SHOW_REF":
            raise BadInput(f"{where}: must be a SELECT statement, not DESCRIBE, SHOW or SUMMARIZE")
        if n.get("type") != "BASE_TABLE":
            continue
        name = n.get("table_name", "")
        if n.get("catalog_name") or n.get("schema_name"):
            qualified = ".".join(
                p for p in (n.get("catalog_name"), n.get("schema_name"), name) if p
            )
            raise BadInput(f"{where}: name tables without a schema or catalog, not {qualified!r}")
        if n.get("at_clause"):
            raise BadInput(f"{where}: {name!r}: AT (time travel) is not supported")
        if name in ctes:
            continue
        if name.startswith("_"):
            raise BadInput(f"{where}: may not read the internal table {name!r}")
        if name not in tables:
            tables.append(name)
    if not tables:
        raise BadInput(f"{where}: reads no feature table")
    return tables


class ViewRowReads:
    def query(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]: ...

    def _reading(self) -> Any: ...

    def all_columns(self, table: str) -> dict[str, str]:
        """Every column of a table with its type, internal ones included ({} if none)."""
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position",
            [table],
        )
        return {r["column_name"]: r["data_type"] for r in rows}

    def _filters(
        self,
        cur: Any,
        entity_sql: str,
        event_sql: str,
        as_of: datetime | None,
        since: datetime | None,
        entities: pa.Array | pa.ChunkedArray | None,
        entity_type: str | None,
    ) -> tuple[list[str], dict[str, Any]]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if as_of is not None:
            where.append(f"{INGESTED} <= $as_of")
            params["as_of"] = as_of
        if since is not None:
            where.append(f"{event_sql} >= $since")
            params["since"] = since
        if entities is not None:
            keys = pa.table({"k": entities})
            cur.register(ENTITY_KEYS, keys)
            cast = f"TRY_CAST(k AS {entity_type})" if entity_type else "k"
            where.append(f"{entity_sql} IN (SELECT {cast} FROM {ENTITY_KEYS})")
        return where, params

    def table_view_rows(
        self,
        table: str,
        entity: str,
        event_time: str,
        created_time: str | None,
        columns: dict[str, str],
        as_of: datetime | None = None,
        since: datetime | None = None,
        entities: pa.Array | pa.ChunkedArray | None = None,
        ordered: bool = False,
    ) -> pa.Table:
        """Rows of ``table``: entity, ``_event_time``, ``_created_time`` (``created_time``
        or the ingest time), ``_seq``, then ``columns`` (output name -> source column);
        only rows with an event time, ingested by ``as_of``, with event time >= ``since``,
        of the given ``entities``. ``ordered`` sorts them by (entity, event, created, seq)."""
        types = self.all_columns(table)
        if not types:
            raise BadInput(f"table {table!r} has no data yet: ingest into it first")
        for c in (entity, event_time, created_time, *columns.values()):
            if c is not None and c not in types:
                raise BadInput(f"table {table!r} has no column {c!r}")
        ent, ev = ident(entity), f"{ident(event_time)}::TIMESTAMP"
        created = f"{ident(created_time)}::TIMESTAMP" if created_time else INGESTED
        select = [ent, f"{ev} AS _event_time", f"{created} AS _created_time",
                  f"{ident(SEQ_COLUMN)}::BIGINT AS _seq"]  # fmt: skip
        select += [f"{ident(src)} AS {ident(out)}" for out, src in columns.items()]
        with self._reading() as cur:
            where, params = self._filters(cur, ent, ev, as_of, since, entities, types[entity])
            where.insert(0, f"{ident(event_time)} IS NOT NULL")
            sql = f"SELECT {', '.join(select)} FROM {ident(table)} WHERE " + " AND ".join(where)
            if ordered:
                sql += f" ORDER BY {ent}, _event_time, _created_time NULLS FIRST, _seq"
            return _arrow(cur.execute(sql, params))

    def _shadowed(self, sql: str, tables: list[str], as_of: bool) -> str:
        """``WITH`` one CTE per table the view reads (user columns, rows by as_of) and
        the view's SELECT as a subquery named ``_view``."""
        ctes = []
        for t in tables:
            cols = [c for c in self.all_columns(t) if not c.startswith("_")]
            if not cols:
                raise BadInput(f"table {t!r} has no data yet: ingest into it first")
            body = f"SELECT {', '.join(map(ident, cols))} FROM {ident(t)}"
            if as_of:
                body += f" WHERE {INGESTED} <= $as_of"
            ctes.append(f"{ident(t)} AS NOT MATERIALIZED ({body})")
        return f"WITH {', '.join(ctes)} SELECT * FROM (\n{sql}\n) AS _view"

    def sql_view_columns(self, sql: str, tables: list[str]) -> dict[str, str]:
        """The output columns of a view's SELECT and their types, from a LIMIT 0 probe."""
        missing = [t for t in tables if t not in self.table_names()]
        if missing:
            raise BadInput(f"table {missing[0]!r} has no data yet: ingest into it first")
        probe = self._shadowed(sql, tables, as_of=False) + " LIMIT 0"
        with self._reading() as cur:
            try:
                rel = cur.sql(probe)
                return dict(zip(rel.columns, map(str, rel.types), strict=True))
            except duckdb.Error as exc:
                if isinstance(exc, duckdb.IOException | duckdb.InternalException):
                    raise
                raise BadInput(str(exc).splitlines()[0]) from None

    def sql_view_rows(
        self,
        sql: str,
        tables: list[str],
        entity: str,
        event_time: str,
        created_time: str | None,
        features: list[str],
        as_of: datetime | None = None,
        since: datetime | None = None,
        entities: pa.Array | pa.ChunkedArray | None = None,
    ) -> pa.Table:
        """An SQL view's rows (see the module's docstring for its created time and seq)."""
        ent, ev = ident(entity), f"{ident(event_time)}::TIMESTAMP"
        created = f"{ident(created_time)}::TIMESTAMP" if created_time else ev
        order = ", ".join([ev, created, *map(ident, features)])
        inner = (
            f"SELECT {ent}, {ev} AS _event_time, {created} AS _created_time, "
            f"(row_number() OVER (PARTITION BY {ent} ORDER BY {order}))::BIGINT AS _seq"
            + "".join(f", {ident(f)}" for f in features)
            + f" FROM ({self._shadowed(sql, tables, as_of is not None)}) AS _out"
        )
        with self._reading() as cur:
            where, params = self._filters(cur, ent, "_event_time", None, since, entities, None)
            if as_of is not None:
                params["as_of"] = as_of
            where.insert(0, "_event_time IS NOT NULL")
            outer = f"SELECT * FROM ({inner}) AS _rows WHERE " + " AND ".join(where)
            return _arrow(cur.execute(outer, params))
