"""The workspace file (``falaj.yaml`` in the home, or ``--workspace FILE``): entities,
tables and feature views, as declared. Parsing checks every key and names where a
problem is ("falaj.yaml: views: spend: ttl: 'x' is not a duration"); what needs the
stores (do the columns exist? what does the SQL give?) is checked by ``FeatureViews``.

    entities:
      customer: {join_key: customer_id, description: "A card holder"}
    tables:
      transactions:                # a TableSpec (appliance/ingest/contracts.py)
        entity: customer_id
        event_time: event_time
        created_time: created_at
        contract: {policy: quarantine, columns: {amount: {type: DOUBLE, min: 0}}}
    views:
      customer_profile:            # columns of one table
        table: transactions
        columns: [amount, channel] # optional: every user column but the keys
        ttl: 30d                   # optional
      spend:                       # kernel transforms per entity over event time
        table: transactions
        transforms:
          - {rolling: sum, column: amount, window: 30d, name: spend_30d}
          - {date_part: hour, column: event_time, name: event_hour}
          - {encode: hash, column: channel, buckets: 16, name: channel_bucket}
        ttl: 90d
      merchant_risk:               # one SELECT over feature tables
        sql: "SELECT merchant_id, event_time, amount FROM transactions"
        entity: merchant_id
        event_time: event_time
        created_time: created_at   # optional: else the event time
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from appliance.durations import format_duration, parse_duration
from appliance.errors import BadInput
from appliance.features.transforms import parse_transform
from appliance.ingest.contracts import TableSpec
from appliance.names import check_name
from appliance.stores.view_rows import parse_view_sql

TOP_KEYS = {"entities", "tables", "views", "training", "pipelines"}
ENTITY_KEYS = {"join_key", "description"}
VIEW_KEYS = {
    "columns": {"table", "columns", "ttl"},
    "transforms": {"table", "transforms", "columns", "ttl"},
    "sql": {"sql", "entity", "event_time", "created_time", "ttl"},
}


@dataclass(frozen=True)
class Entity:
    name: str
    join_key: str
    description: str = ""


@dataclass(frozen=True)
class ViewDecl:
    """A view as declared, checked for shape but not against the stores."""

    name: str
    kind: str  # "columns" | "transforms" | "sql"
    where: str  # "falaj.yaml: views: spend", for errors found later
    table: str | None = None
    columns: tuple[str, ...] | None = None  # None: every user column but the keys
    transforms: tuple[dict[str, Any], ...] = ()
    sql: str | None = None
    sql_tables: tuple[str, ...] = ()
    entity: str | None = None  # sql views declare theirs; others take their table's
    event_time: str | None = None
    created_time: str | None = None
    ttl: timedelta | None = None


@dataclass(frozen=True)
class Workspace:
    source: str
    entities: dict[str, Entity] = field(default_factory=dict)
    tables: dict[str, TableSpec] = field(default_factory=dict)
    views: dict[str, ViewDecl] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # name -> training.specs.Spec
    pipelines: dict[str, Any] = field(default_factory=dict)  # name -> scheduler.specs.Pipeline


def expect_mapping(value: Any, where: str, optional: bool = False) -> dict[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def check_keys(d: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(map(str, d)) - keys)
    if unknown:
        known = ", ".join(sorted(keys)) or "none"
        raise BadInput(f"{where}: unknown key {unknown[0]!r} (known: {known})")


def _name(kind: str, name: Any, where: str) -> str:
    try:
        return check_name(kind, name)
    except BadInput as exc:
        raise type(exc)(f"{where}: {exc.message}") from None


def column_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or value.startswith("_"):
        raise BadInput(f"{where}: {value!r} is not a column name")
    return value


def parse_ttl(value: Any, where: str) -> timedelta | None:
    return None if value is None else parse_duration(value, f"{where}: ttl")


def parse_columns(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # "a,b" as the CLI writes it
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: columns: expected a non-empty list of column names")
    cols = tuple(column_name(c, f"{where}: columns") for c in value)
    dup = next((c for i, c in enumerate(cols) if c in cols[:i]), None)
    if dup is not None:
        raise BadInput(f"{where}: columns: {dup!r} is listed twice")
    return cols


def parse_view(name: Any, d: Any, where: str) -> ViewDecl:
    name = _name("view", name, where)
    d = expect_mapping(d, where)
    kind = "sql" if "sql" in d else "transforms" if "transforms" in d else "columns"
    check_keys(d, VIEW_KEYS[kind], where)
    ttl = parse_ttl(d.get("ttl"), where)
    if kind == "sql":
        for k in ("entity", "event_time"):
            if k not in d:
                raise BadInput(f"{where}: {k} is missing (an SQL view names its key columns)")
        created = d.get("created_time")
        return ViewDecl(
            name, kind, where, sql=str(d["sql"]).strip() if isinstance(d["sql"], str) else None,
            sql_tables=tuple(parse_view_sql(d["sql"], f"{where}: sql")),
            entity=column_name(d["entity"], f"{where}: entity"),
            event_time=column_name(d["event_time"], f"{where}: event_time"),
            created_time=None if created is None else column_name(created, f"{where}: created_time"),
            ttl=ttl,
        )  # fmt: skip
    if "table" not in d:
        raise BadInput(f"{where}: table is missing (or give sql)")
    table = _name("table", d["table"], f"{where}: table")
    transforms: tuple[dict[str, Any], ...] = ()
    if kind == "transforms":
        items = d["transforms"]
        if not isinstance(items, list) or not items:
            raise BadInput(f"{where}: transforms: expected a non-empty list")
        transforms = tuple(
            parse_transform(t, f"{where}: transforms[{i}]") for i, t in enumerate(items)
        )
    columns = parse_columns(d.get("columns"), where)
    names = [*(columns or ()), *(t["name"] for t in transforms)]
    dup = next((c for i, c in enumerate(names) if c in names[:i]), None)
    if dup is not None:
        raise BadInput(f"{where}: the output column {dup!r} is given twice")
    return ViewDecl(name, kind, where, table=table, columns=columns, transforms=transforms,
                    ttl=ttl)  # fmt: skip


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep
    the last silently: two views of one name are a mistake to name, not to guess)."""


def _mapping_no_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def parse(text: str, source: str) -> Workspace:
    """A workspace from YAML text; ``source`` names it in errors."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{source}: not valid YAML{at}: {problem}") from None
    if doc is None:
        doc = {}
    doc = expect_mapping(doc, source)
    check_keys(doc, TOP_KEYS, source)
    entities = {}
    for name, d in expect_mapping(doc.get("entities"), f"{source}: entities", True).items():
        where = f"{source}: entities: {name}"
        name = _name("entity", name, where)
        if isinstance(d, str):
            d = {"join_key": d}
        d = expect_mapping(d, where)
        check_keys(d, ENTITY_KEYS, where)
        if "join_key" not in d:
            raise BadInput(f"{where}: join_key is missing")
        desc = d.get("description", "")
        if not isinstance(desc, str):
            raise BadInput(f"{where}: description must be text")
        entities[name] = Entity(name, column_name(d["join_key"], f"{where}: join_key"), desc)
    tables = {}
    for name, d in expect_mapping(doc.get("tables"), f"{source}: tables", True).items():
        where = f"{source}: tables: {name}"
        _name("table", name, where)
        tables[name] = TableSpec.from_dict(name, d, where)
    views = {}
    for name, d in expect_mapping(doc.get("views"), f"{source}: views", True).items():
        view = parse_view(name, d, f"{source}: views: {name}")
        views[view.name] = view
    # imported here: training builds on features, whose views module reads this file
    from appliance.training.specs import parse_specs

    training = parse_specs(doc.get("training"), f"{source}: training")
    from appliance.scheduler.specs import parse_pipelines

    pipelines = parse_pipelines(doc.get("pipelines"), f"{source}: pipelines",
                                doc.get("training"), training)  # fmt: skip
    return Workspace(source, entities, tables, views, training, pipelines)


def load(path: str | Path) -> Workspace:
    """Read and parse a workspace file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such workspace file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse(text, str(path))


def ttl_text(ttl: timedelta | None) -> str | None:
    return None if ttl is None else format_duration(ttl)
