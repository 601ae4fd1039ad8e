"""Declared tables and their data contracts.

A ``TableSpec`` is what the workspace (``falaj.yaml``) says about a table: its entity
and event-time columns, an optional created-time column and a ``Contract``. A contract
lists per-column rules (type, nullability, range, allowed values), the uniqueness of
(entity, event time), a freshness bound, and what to do with rows that break it:
``refuse`` the batch or ``quarantine`` them while the clean rows land.

    tables:
      transactions:
        entity: customer_id
        event_time: event_time
        created_time: created_at        # optional
        personal: [full_name, email]    # optional: encrypted per subject (crypto-shredding)
        contract:
          policy: quarantine            # or refuse (the default)
          unique_key: true              # (entity, event time) appears once
          freshness: 2d                 # a row whose event time is older than the
                                        # ingest time minus 2 days breaks it
          columns:
            amount: {type: DOUBLE, nullable: false, min: 0, max: 1000000}
            channel: {type: VARCHAR, allowed: [web, store, phone]}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from appliance.durations import format_duration, parse_duration
from appliance.errors import BadInput
from appliance.names import check_name

POLICIES = ("refuse", "quarantine")
TYPES = ("BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR", "TIMESTAMP")  # what ingest stores
COLUMN_KEYS = {"type", "nullable", "min", "max", "allowed"}
CONTRACT_KEYS = {"policy", "unique_key", "freshness", "columns"}
SPEC_KEYS = {"entity", "event_time", "created_time", "contract", "personal"}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _known(d: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(d) - keys)
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def _column_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or value.startswith("_"):
        raise BadInput(f"{where}: {value!r} is not a column name")
    return value


@dataclass(frozen=True)
class ColumnRule:
    type: str | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ColumnRule:
        d = _mapping(d, where)
        _known(d, COLUMN_KEYS, where)
        type_ = d.get("type")
        if type_ is not None:
            type_ = str(type_).upper()
            if type_ not in TYPES:
                raise BadInput(f"{where}: type {d['type']!r} is not one of {', '.join(TYPES)}")
        nullable = d.get("nullable", True)
        if not isinstance(nullable, bool):
            raise BadInput(f"{where}: nullable must be true or false, got {nullable!r}")
        bounds = {}
        for k in ("min", "max"):
            v = d.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or math.isnan(v)):  # fmt: skip
                raise BadInput(f"{where}: {k} must be a number, got {v!r}")
            bounds[k] = v
        if None not in bounds.values() and bounds["min"] > bounds["max"]:
            raise BadInput(f"{where}: min {bounds['min']} is greater than max {bounds['max']}")
        allowed = d.get("allowed")
        if allowed is not None:
            if not isinstance(allowed, list) or not allowed:
                raise BadInput(f"{where}: allowed must be a non-empty list")
            if any(isinstance(v, dict | list) for v in allowed):
                raise BadInput(f"{where}: allowed values must be plain values")
            allowed = tuple(allowed)
        return cls(type_, nullable, bounds["min"], bounds["max"], allowed)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"nullable": self.nullable}
        if self.type is not None:
            d["type"] = self.type
        for k in ("min", "max"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.allowed is not None:
            d["allowed"] = list(self.allowed)
        return d


@dataclass(frozen=True)
class Contract:
    policy: str = "refuse"
    unique_key: bool = False
    freshness: timedelta | None = None
    columns: dict[str, ColumnRule] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Contract:
        d = _mapping(d, where)
        _known(d, CONTRACT_KEYS, where)
        policy = d.get("policy", "refuse")
        if policy not in POLICIES:
            raise BadInput(f"{where}: policy {policy!r} is not one of {', '.join(POLICIES)}")
        unique = d.get("unique_key", False)
        if not isinstance(unique, bool):
            raise BadInput(f"{where}: unique_key must be true or false, got {unique!r}")
        fresh = d.get("freshness")
        freshness = parse_duration(fresh, f"{where}: freshness") if fresh is not None else None
        cols = _mapping(d.get("columns", {}), f"{where}: columns")
        columns = {
            _column_name(c, f"{where}: columns"): ColumnRule.from_dict(r, f"{where}: column {c!r}")
            for c, r in cols.items()
        }
        return cls(policy, unique, freshness, columns)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"policy": self.policy, "unique_key": self.unique_key}
        if self.freshness is not None:
            d["freshness"] = format_duration(self.freshness)
        d["columns"] = {c: r.to_dict() for c, r in self.columns.items()}
        return d


@dataclass(frozen=True)
class TableSpec:
    table: str
    entity: str
    event_time: str
    created_time: str | None = None
    contract: Contract | None = None
    personal: tuple[str, ...] = ()  # encrypted per subject at ingest (compliance.shredding)

    @classmethod
    def from_dict(cls, table: str, d: Any, where: str) -> TableSpec:
        check_name("table", table)
        d = _mapping(d, where)
        _known(d, SPEC_KEYS, where)
        for k in ("entity", "event_time"):
            if k not in d:
                raise BadInput(f"{where}: {k} is missing")
        entity = _column_name(d["entity"], f"{where}: entity")
        event_time = _column_name(d["event_time"], f"{where}: event_time")
        created = d.get("created_time")
        if created is not None:
            created = _column_name(created, f"{where}: created_time")
        contract = d.get("contract")
        if contract is not None:
            contract = Contract.from_dict(contract, f"{where}: contract")
        personal = d.get("personal") or []
        if not isinstance(personal, list):
            raise BadInput(f"{where}: personal: expected a list of column names")
        personal = tuple(_column_name(c, f"{where}: personal") for c in personal)
        keys = {entity: "entity", event_time: "event_time", created: "created_time"}
        for c in personal:
            if c in keys:
                raise BadInput(f"{where}: personal: {c!r} is the table's {keys[c]} column; "
                               "key columns cannot be personal (encrypted)")  # fmt: skip
            if personal.count(c) > 1:
                raise BadInput(f"{where}: personal: {c!r} is listed twice")
        return cls(table, entity, event_time, created, contract, personal)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"entity": self.entity, "event_time": self.event_time}
        if self.created_time is not None:
            d["created_time"] = self.created_time
        if self.contract is not None:
            d["contract"] = self.contract.to_dict()
        if self.personal:
            d["personal"] = list(self.personal)
        return d


# -- evaluation ----------------------------------------------------------------------
#
# Every row of every batch is checked against these rules; a rule a row breaks is a
# reason, written "column: what is wrong" ("amount: 1200000 > max 1000000").
#
# - type: a value that does not convert to the column's type (the table's type, or for
#   a new table the contract's declared type, else the inferred one);
# - missing: no entity or event time (always checked, contract or not);
# - nullable: no value where the contract says ``nullable: false``;
# - min / max: a number below ``min`` or above ``max`` (both bounds allowed);
# - allowed: a value not among ``allowed`` (compared after conversion to the type);
# - freshness: an event time older than the ingest time minus ``freshness`` (a row that
#   arrives later than the bound after its event is stale);
# - unique_key: an (entity, event time) seen before, in the same input or stored; the
#   first one stays, the later ones break the rule.
#
# Policy ``refuse`` refuses the whole input at the first row that breaks any rule,
# naming file, row (and line for CSV), column and rule; ``quarantine`` lands the rows
# that break none and keeps the others, with every reason, in the quarantine.
# Tables with no contract get type and missing only, with policy refuse.

RULES = ("type", "missing", "nullable", "min", "max", "allowed", "freshness", "unique_key")
CONTRACT_RULES = {"nullable", "min", "max", "allowed", "freshness", "unique_key"}


@dataclass(frozen=True)
class Check:
    column: str
    rule: str
    arg: Any = None  # the column type, a bound, the allowed values, the oldest event time

    @property
    def name(self) -> str:
        """The key this check is counted under in a quality report."""
        return f"{self.rule}:{self.column}"


def build_checks(
    contract: Contract | None,
    types: dict[str, str],
    entity: str,
    timestamp: str,
    now: datetime,
    where: str,
    numeric: Any = None,
) -> list[Check]:
    """The checks for rows of a table with these column types, in the order a row's
    reasons are listed. ``numeric(type)`` says whether min/max apply to a type."""
    checks = []
    for col, type_ in types.items():
        checks.append(Check(col, "type", type_))
        if col in (entity, timestamp):
            checks.append(Check(col, "missing"))
        rule = contract.columns.get(col) if contract else None
        if rule is None:
            continue
        if not rule.nullable and col not in (entity, timestamp):
            checks.append(Check(col, "nullable"))
        for bound in ("min", "max"):
            value = getattr(rule, bound)
            if value is None:
                continue
            if numeric is not None and not numeric(type_):
                raise BadInput(f"{where}: the contract gives column {col!r} a {bound}, "
                               f"but it holds {type_}, not numbers")  # fmt: skip
            checks.append(Check(col, bound, value))
        if rule.allowed is not None:
            checks.append(Check(col, "allowed", rule.allowed))
    if contract is not None:
        missing = [c for c in contract.columns if c not in types]
        if missing:
            raise BadInput(f"{where}: the contract names column {missing[0]!r}, which the "
                           f"table does not have (columns: {', '.join(types)})")  # fmt: skip
        if contract.freshness is not None:
            checks.append(Check(timestamp, "freshness", now - contract.freshness))
    return checks


def show(value: Any) -> str:
    """A value as a reason shows it: numbers plainly, text quoted."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, str):
        return repr(value)
    return str(value)


def reason(check: Check, raw: Any, value: Any) -> str:
    """What is wrong with a value (``raw`` as given, ``value`` converted)."""
    if check.rule == "type":
        what = "timestamp" if check.arg == "TIMESTAMP" else check.arg
        return f"{show(raw if isinstance(raw, str) else str(raw))} is not a valid {what}"
    if check.rule in ("missing", "nullable"):
        return "the value is missing"
    if check.rule == "min":
        return f"{show(value)} < min {show(check.arg)}"
    if check.rule == "max":
        return f"{show(value)} > max {show(check.arg)}"
    if check.rule == "allowed":
        return f"{show(value)} is not one of {', '.join(str(v) for v in check.arg)}"
    if check.rule == "freshness":
        return f"{show(value)} is older than the freshness bound ({show(check.arg)})"
    raise ValueError(check.rule)
