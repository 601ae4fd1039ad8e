"""Typing and checking the rows of a source, batch by batch.

Nothing here writes to a store. ``make_plan`` decides the columns and their types (the
table's; for a new table the contract's declared ones, else inferred: from the
source's schema, or for text by a first streaming pass over the values) and the
checks of the table's contract (``contracts.build_checks``). ``check_batches`` then
converts each batch with DuckDB's TRY_CAST (``stores.staging``), so the first value
that does not convert can be named exactly, and splits it into rows that land and rows
that break a rule, each with its reasons. Under policy ``refuse`` the first such row
raises ``BadInput`` naming the file, row (and line, for CSV), column and rule.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from appliance.errors import BadInput, BadName
from appliance.ingest.contracts import CONTRACT_RULES, Check, Contract, build_checks, reason
from appliance.ingest.sources import Source
from appliance.stores.staging import FAIL, ROW, Staging, is_nested, is_numeric

MAX_NAME = 255
# A text column whose values are mostly numbers is a numeric column with bad values,
# not a text column: refuse it rather than store the numbers as text.
NUMERIC_MAJORITY = 0.9

Progress = Callable[[int, int | None, str], None]  # (done, total or None, unit)


def check_column(path: Path | str, name: str) -> str:
    """A column name from a file: any printable text works (it is quoted everywhere),
    except what the store reserves or cannot tell apart."""
    where = f"{path}: column {name!r}"
    if not isinstance(name, str) or not name or not name.strip():
        raise BadName(f"{where}: a column name is empty")
    if name.startswith("_"):
        raise BadName(f"{where}: names starting with '_' are reserved")
    if len(name) > MAX_NAME:
        raise BadName(f"{where}: the name is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadName(f"{where}: the name holds a control or invisible character")
    return name


@dataclass
class Plan:
    where: str
    types: dict[str, str]  # column -> DuckDB type, in the source's column order
    entity: str
    timestamp: str
    created: str | None
    checks: list[Check]
    policy: str  # refuse or quarantine
    unique: bool
    lines: bool  # errors name the line too (CSV)


@dataclass
class Checked:
    """One batch, checked: the rows that land (typed, with ``_row``) and those that
    do not (their values as given, as text, and their reasons)."""

    first_row: int
    rows: int
    landed: pa.Table
    # row, values (column -> text), reasons ({"rule": "max:amount", "message": "amount: …"})
    failed: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def make_plan(
    src: Source,
    entity: str,
    timestamp: str,
    created: str | None,
    existing: dict[str, str] | None,
    contract: Contract | None,
    now: datetime,
    staging: Staging,
    progress: Progress | None = None,
) -> Plan:
    where = src.where
    columns = src.columns
    seen: dict[str, str] = {}
    for col in columns:
        check_column(where, col)
        # DuckDB's names are case-insensitive: "Age" and "age" are the same column
        twin = seen.setdefault(col.casefold(), col)
        if twin != col or columns.count(col) > 1:
            raise BadName(f"{where}: column {col!r} appears twice in the header (as {twin!r})")
    roles = [("entity", entity), ("timestamp", timestamp)]
    if created is not None:
        roles.append(("created-time", created))
    for role, col in roles:
        if col not in columns:
            raise BadInput(
                f"{where}: the {role} column {col!r} is missing (columns: {', '.join(columns)})"
            )
    declared = {c: r.type for c, r in (contract.columns.items() if contract else ()) if r.type}
    if existing is not None:
        missing = [c for c in existing if c not in columns]
        if missing:
            raise BadInput(f"{where}: column {missing[0]!r} of the table is missing from the file")
        extra = [c for c in columns if c not in existing]
        if extra:
            raise BadInput(
                f"{where}: column {extra[0]!r} is not in the table (columns: {', '.join(existing)})"
            )
        for c, t in declared.items():
            if c in existing and existing[c] != t:
                raise BadInput(f"{where}: the contract declares column {c!r} {t}, but the "
                               f"table stores it as {existing[c]}; change the contract "
                               "or ingest into a new table")  # fmt: skip
        types = {c: existing[c] for c in columns}
    else:
        inferred = _infer(src, staging, entity, [c for c in (timestamp, created) if c], progress)
        types = {c: declared.get(c, inferred[c]) for c in columns}
        for c in (timestamp, created):
            if c is not None:
                types[c] = "TIMESTAMP"
        for c, t in types.items():
            if is_nested(t):
                raise BadInput(f"{where}: column {c!r} holds nested values ({t}); "
                               "give plain values (flatten it first)")  # fmt: skip
    checks = build_checks(contract, types, entity, timestamp, now, where, is_numeric)
    return Plan(where, types, entity, timestamp, created, checks,
                contract.policy if contract else "refuse",
                bool(contract and contract.unique_key), src.lines)  # fmt: skip


def _infer(
    src: Source, staging: Staging, entity: str, fixed: list[str], progress: Progress | None
) -> dict[str, str]:
    """Column types for a new table: from the source's schema, or from its text (a
    streaming pass over every value); the ``fixed`` columns are times."""
    if not src.is_text:
        if src.schema is None:
            raise BadInput(f"{src.where}: the source gives no schema")
        return staging.arrow_types(src.schema)
    probe = [c for c in src.columns if c not in fixed]
    totals = {c: [0, 0, 0] for c in probe}
    row = 1
    for batch in src.batches():
        staging.load(batch, row, True)
        for t, counts in zip(totals.values(), staging.text_counts(probe), strict=True):
            for i in range(3):
                t[i] += counts[i]
        row += batch.num_rows
        if progress is not None:
            progress(src.done() if src.done else row - 1, src.total, src.unit)
    if row == 1:
        raise BadInput(f"{src.where}: has no rows")
    types = dict.fromkeys(fixed, "TIMESTAMP")
    for c, (n, n_int, n_dbl) in totals.items():
        if n > 0 and n_int == n:
            types[c] = "BIGINT"
        elif n > 0 and n_dbl == n:
            types[c] = "DOUBLE"
        elif c != entity and n > 0 and n_dbl >= NUMERIC_MAJORITY * n:
            types[c] = "DOUBLE"  # mostly numbers: the others are errors, reported by row
        else:
            types[c] = "VARCHAR"
    return types


def row_where(row: int, lines: bool) -> str:
    return f"row {row} (line {row + 1})" if lines else f"row {row}"


def as_text(value: Any) -> str | None:
    """A value as text, the way it is kept in the quarantine."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def check_batches(
    src: Source,
    plan: Plan,
    staging: Staging,
    progress: Progress | None = None,
    first_row: int = 1,
) -> Iterator[Checked]:
    """Each non-empty batch of the source, converted and checked."""
    row = first_row
    for batch in src.batches():
        if batch.num_rows == 0:
            continue
        yield check_batch(batch, row, src.is_text, plan, staging)
        row += batch.num_rows
        if progress is not None:
            progress(src.done() if src.done else row - first_row, src.total, src.unit)


def check_batch(
    batch: pa.RecordBatch | pa.Table, row: int, is_text: bool, plan: Plan, staging: Staging
) -> Checked:
    staging.load(batch, row, is_text)
    typed = staging.check(plan.types, plan.checks)
    bad = pc.greater(pc.list_value_length(typed.column(FAIL)), 0)
    n_bad = pc.sum(bad).as_py() or 0
    landed = (
        typed.filter(pc.invert(bad)).drop_columns([FAIL]) if n_bad else typed.drop_columns([FAIL])
    )
    out = Checked(row, batch.num_rows, landed)
    if not n_bad:
        return out
    idx = pc.indices_nonzero(bad)
    failing = typed.take(idx).to_pylist()
    raw = batch.select(list(plan.types)).take(idx).to_pylist()
    for t, r in zip(failing, raw, strict=True):
        broken = [plan.checks[k] for k in t[FAIL]]
        if plan.policy == "refuse":
            first = broken[0]
            rule = f" (contract: {first.rule})" if first.rule in CONTRACT_RULES else ""
            raise BadInput(
                f"{plan.where}: {row_where(t[ROW], plan.lines)}, column {first.column!r}: "
                f"{reason(first, r[first.column], t[first.column])}{rule}"
            )
        out.counts.update(c.name for c in broken)
        out.failed.append({
            "row": t[ROW],
            "values": {c: as_text(v) for c, v in r.items()},
            "reasons": [{"rule": c.name,
                         "message": f"{c.column}: {reason(c, r[c.column], t[c.column])}"}
                        for c in broken],
        })  # fmt: skip
    return out
