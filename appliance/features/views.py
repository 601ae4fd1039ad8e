"""Declared feature views: register them (``apply``, ``define``), resolve ``VIEW`` or
``VIEW@2``, and read a view's feature rows for training sets and the online store.

A view is one of three kinds: ``columns`` of one table, kernel ``transforms`` per
entity over event time of one table, or an ``sql`` SELECT over tables. Registering a
view whose definition (normalised, fingerprinted with SHA-256) differs from its latest
version writes a new version; an unchanged one keeps its version and writes nothing.
Versions are never changed or removed, so ``VIEW@1`` gives what it gave when declared.

Rows (``feature_rows``) always start with the entity column, ``_event_time``,
``_created_time`` and ``_seq``, then the features in declared order. A table's created
time is its declared created-time column, else the ingest time; its ``_seq`` is the
ingest sequence. An SQL view's created time is its declared ``created_time`` column,
else its event time, and its ``_seq`` numbers each entity's output rows in (event time,
created time, feature values) order: the same data always gives the same rows. Rows
without an event time are left out (no point-in-time join could ever match them).
Rows come in no particular order, except that a transforms view computes its windows
over each entity's rows sorted by (event time, created time, sequence).
"""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from appliance.auth import Actor, require
from appliance.durations import format_duration
from appliance.errors import BadInput, NotFound
from appliance.features import transforms as tf
from appliance.features.workspace import ViewDecl, Workspace, load, parse_view
from appliance.ingest.contracts import TableSpec
from appliance.names import check_name
from appliance.stores import ControlStore, FeatureStore

WORKSPACE_FILE = "falaj.yaml"
KEY_COLUMNS = ("_event_time", "_created_time", "_seq")


class UnknownFeatureView(NotFound):
    pass


@dataclass(frozen=True)
class View:
    """One registered version of a feature view."""

    name: str
    version: int
    kind: str  # "columns" | "transforms" | "sql"
    entity: str  # the join-key column
    table: str | None  # source table (None for sql)
    features: dict[str, str]  # output feature column -> DuckDB type, in order
    ttl: timedelta | None
    definition: dict[str, Any]  # as declared, normalised
    fingerprint: str  # sha256 of the canonical definition
    created_at: str
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def fingerprint(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'VIEW' (the latest version) or 'VIEW@N'."""
    if not isinstance(ref, str):
        raise BadInput(f"view {ref!r}: expected VIEW or VIEW@N")
    name, at, v = ref.partition("@")
    if at and not (v.isascii() and v.isdigit() and int(v) >= 1):
        raise BadInput(f"view {ref!r}: the version after '@' must be a number from 1")
    check_name("view", name)
    return name, int(v) if at else None


def utc_naive(value: datetime | str | None, what: str) -> datetime | None:
    """A UTC-naive datetime from a datetime (aware ones converted) or ISO text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"{what}: {value!r} is not an ISO time like 2025-01-31T12:00") from None
    if not isinstance(value, datetime):
        raise BadInput(f"{what}: {value!r} is not a time")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class _Registration:
    """A checked view, ready to write: what its version row holds."""

    name: str
    kind: str
    entity: str
    table: str | None
    ttl: timedelta | None
    definition: dict[str, Any]
    features: dict[str, str | None]
    fingerprint: str


class FeatureViews:
    def __init__(self, control: ControlStore, features: FeatureStore) -> None:
        self.control = control
        self.features = features

    @property
    def default_workspace(self) -> Path:
        """``falaj.yaml`` in the home (the folder holding control.db)."""
        return Path(self.control.path).parent / WORKSPACE_FILE

    # -- registering -------------------------------------------------------------

    def apply(self, path: str | Path | None, actor: Actor) -> dict[str, Any]:
        """Validate a whole workspace file, then register in one transaction each changed
        entity, table spec and view (a new version), one audit event per change.
        Nothing is registered if any part is wrong; nothing absent from the file is
        deleted."""
        require(actor, "features.define")
        ws = load(path if path is not None else self.default_workspace)
        return self._register(ws, actor)

    def define(
        self,
        name: str,
        table: str,
        actor: Actor,
        columns: list[str] | str | None = None,
        ttl: str | timedelta | None = None,
    ) -> dict[str, Any]:
        """Declare (or re-declare) a columns view of one table."""
        require(actor, "features.define")
        where = f"view {name!r}"
        d: dict[str, Any] = {"table": table}
        if columns is not None:
            d["columns"] = columns
        if ttl is not None:
            d["ttl"] = format_duration(ttl) if isinstance(ttl, timedelta) else ttl
        decl = parse_view(name, d, where)
        result = self._register(Workspace(where, views={decl.name: decl}), actor)
        [entry] = result["views"]
        return entry

    def _register(self, ws: Workspace, actor: Actor) -> dict[str, Any]:
        specs = self.control.table_specs()
        regs = [self._check(v, ws, specs) for v in ws.views.values()]
        result: dict[str, Any] = {"workspace": ws.source, "entities": [], "tables": [],
                                  "views": []}  # fmt: skip
        with self.control.transaction() as tx:
            for e in ws.entities.values():
                changed = tx.put_entity(e.name, e.join_key, e.description, actor)
                if changed:
                    tx.append_audit(actor, "features.entity.declare", e.name,
                                    {"join_key": e.join_key, "description": e.description})  # fmt: skip
                result["entities"].append({"entity": e.name, "changed": changed})
            for name, spec in ws.tables.items():
                body = spec.to_dict()
                changed = tx.put_table_spec(name, body, actor)
                if changed:
                    tx.append_audit(actor, "data.table.declare", name,
                                    {"spec": body, "previous": specs.get(name)})  # fmt: skip
                result["tables"].append({"table": name, "changed": changed})
            for r in regs:
                latest = tx.latest_view_version(r.name)
                if latest is not None and latest["fingerprint"] == r.fingerprint:
                    result["views"].append({"view": r.name, "version": latest["version"],
                                            "ref": f"{r.name}@{latest['version']}",
                                            "fingerprint": r.fingerprint, "changed": False})  # fmt: skip
                    continue
                ttl = r.ttl.total_seconds() if r.ttl is not None else None
                version = tx.add_view_version(r.name, r.kind, r.entity, r.table, ttl,
                                              r.definition, r.features, r.fingerprint, actor)  # fmt: skip
                tx.append_audit(actor, "features.view.register", r.name, {
                    "version": version, "fingerprint": r.fingerprint, "kind": r.kind,
                    "table": r.table, "previous": latest["version"] if latest else None,
                })  # fmt: skip
                result["views"].append({"view": r.name, "version": version,
                                        "ref": f"{r.name}@{version}",
                                        "fingerprint": r.fingerprint, "changed": True})  # fmt: skip
        declared_views = {v["view"] for v in result["views"]}
        result["kept"] = {
            "views": [v["name"] for v in self.control.latest_views()
                      if v["name"] not in declared_views],
            "tables": sorted(set(specs) - set(ws.tables)),
            "note": "views and tables absent from the workspace are kept, not deleted",
        }  # fmt: skip
        result["changed"] = any(x["changed"] for k in ("entities", "tables", "views")
                                for x in result[k])  # fmt: skip
        return result

    # -- checking a declaration against the stores -------------------------------

    def _table_keys(
        self, table: str, ws: Workspace, specs: dict[str, dict[str, Any]], where: str
    ) -> tuple[str, str, str | None, TableSpec | None]:
        """(entity, event time, created time, spec) of a declared or ingested table."""
        spec = ws.tables.get(table)
        if spec is None and table in specs:
            spec = TableSpec.from_dict(table, specs[table], f"table {table!r}")
        ingested = self.features.table_keys(table)
        if spec is not None:
            if ingested is not None and ingested != (spec.entity, spec.event_time):
                raise BadInput(
                    f"{where}: table {table!r} is declared with entity {spec.entity!r} and "
                    f"event time {spec.event_time!r}, but was ingested with {ingested[0]!r} "
                    f"and {ingested[1]!r}"
                )
            stored = self.features.created_column(table) if ingested is not None else None
            if ingested is not None and stored != spec.created_time:
                raise BadInput(
                    f"{where}: table {table!r} is declared with created time "
                    f"{spec.created_time!r}, but was ingested with {stored!r}"
                )
            return spec.entity, spec.event_time, spec.created_time, spec
        if ingested is not None:
            return ingested[0], ingested[1], self.features.created_column(table), None
        raise BadInput(f"{where}: table {table!r} is neither declared (tables:) nor ingested")

    def _known_types(self, table: str, spec: TableSpec | None) -> dict[str, str | None] | None:
        """A table's user columns and types: the ingested table's, else the contract's
        (types may be None), else None (nothing known until the first ingest)."""
        types = self.features.column_types(table)
        if types is not None:
            return dict(types)
        if spec is not None and spec.contract is not None and spec.contract.columns:
            return {c: r.type for c, r in spec.contract.columns.items()}
        return None

    def _check(self, v: ViewDecl, ws: Workspace, specs: dict[str, dict[str, Any]]) -> _Registration:
        ttl = format_duration(v.ttl) if v.ttl is not None else None
        if v.kind == "sql":
            return self._check_sql(v, ws, specs, ttl)
        entity, event_time, created, spec = self._table_keys(v.table, ws, specs, v.where)
        keys = {entity: "entity", event_time: "event time", created: "created time"}
        names = [*(v.columns or ()), *(t["name"] for t in v.transforms)]
        for c in names:
            if c in keys:
                raise BadInput(f"{v.where}: {c!r} is the table's {keys[c]} column, which every "
                               "row carries already; leave it out")  # fmt: skip
        personal = set(spec.personal) if spec is not None else set()
        for c in [*(v.columns or ()), *(t["column"] for t in v.transforms)]:
            if c in personal:
                raise BadInput(f"{v.where}: {c!r} is a personal column of table {v.table!r} "
                               "(encrypted per subject): personal data cannot be a feature")  # fmt: skip
        known = self._known_types(v.table, spec)
        complete = self.features.column_types(v.table) is not None
        features: dict[str, str | None] = {}
        if v.columns is not None:
            for c in v.columns:
                if complete and c not in known:
                    raise BadInput(f"{v.where}: columns: table {v.table!r} has no column {c!r}")
                features[c] = (known or {}).get(c)
        elif v.kind == "columns" and complete:
            features = {c: t for c, t in known.items() if c not in keys and c not in personal}
            if not features:
                raise BadInput(f"{v.where}: table {v.table!r} has no columns besides its keys")
        for i, t in enumerate(v.transforms):
            where = f"{v.where}: transforms[{i}]"
            if complete and t["column"] not in known:
                raise BadInput(f"{where}: table {v.table!r} has no column {t['column']!r}")
            tf.check_input(t, (known or {}).get(t["column"]), where)
            features[t["name"]] = tf.output_type(t)
        definition = {
            "kind": v.kind, "table": v.table, "entity": entity, "event_time": event_time,
            "created_time": created, "columns": list(v.columns) if v.columns else None, "ttl": ttl,
        }  # fmt: skip
        if v.kind == "transforms":
            definition["transforms"] = [dict(t) for t in v.transforms]
        return _Registration(v.name, v.kind, entity, v.table, v.ttl, definition, features,
                             fingerprint(definition))  # fmt: skip

    def _check_sql(
        self, v: ViewDecl, ws: Workspace, specs: dict[str, dict[str, Any]], ttl: str | None
    ) -> _Registration:
        ingested = set(self.features.table_names())
        for t in v.sql_tables:
            if t not in ingested and t not in ws.tables and t not in specs:
                raise BadInput(f"{v.where}: sql: reads {t!r}, which is neither a declared "
                               "nor an ingested feature table")  # fmt: skip
        definition = {
            "kind": "sql", "sql": v.sql, "tables": list(v.sql_tables), "entity": v.entity,
            "event_time": v.event_time, "created_time": v.created_time, "ttl": ttl,
        }  # fmt: skip
        features: dict[str, str | None] = {}
        if all(t in ingested for t in v.sql_tables):
            features = dict(self._sql_features(definition, v.where))
        for t in v.sql_tables:
            spec = ws.tables.get(t) or (TableSpec.from_dict(t, specs[t], t) if t in specs else None)
            hit = sorted(set(spec.personal if spec else ()) & {*features, v.entity})
            if hit:
                raise BadInput(f"{v.where}: sql: {hit[0]!r} is a personal column of table {t!r} "
                               "(encrypted per subject): personal data cannot be a feature")  # fmt: skip
        return _Registration(v.name, "sql", v.entity, None, v.ttl, definition, features,
                             fingerprint(definition))  # fmt: skip

    def _sql_features(self, definition: dict[str, Any], where: str) -> dict[str, str]:
        """An SQL view's feature columns and types, from a LIMIT 0 probe."""
        try:
            out = self.features.sql_view_columns(definition["sql"], definition["tables"])
        except BadInput as exc:
            raise BadInput(f"{where}: sql: {exc.message}") from None
        keys = [definition["entity"], definition["event_time"], definition["created_time"]]
        for k, what in zip(keys, ("entity", "event_time", "created_time"), strict=True):
            if k is not None and k not in out:
                raise BadInput(f"{where}: sql: the output has no {what} column {k!r} "
                               f"(it has {', '.join(out)})")  # fmt: skip
        features = {c: t for c, t in out.items() if c not in keys}
        bad = next((c for c in features if c.startswith("_")), None)
        if bad is not None:
            raise BadInput(f"{where}: sql: output column {bad!r}: names starting with '_' "
                           "are reserved; rename it with AS")  # fmt: skip
        if not features:
            raise BadInput(f"{where}: sql: the output has no feature columns besides its keys")
        return features

    # -- reading -----------------------------------------------------------------

    def resolve(self, ref: str, actor: Actor) -> View:
        """``VIEW`` (its latest version) or ``VIEW@N``, with every feature's type."""
        require(actor, "features.read")
        view = self._view(ref)
        missing = [c for c, t in view.features.items() if t is None]
        if not view.features or missing:
            view = self._typed(view)
        return view

    def _view(self, ref: str) -> View:
        name, version = parse_ref(ref)
        row = self.control.view_version(name, version)
        if row is None:
            known = self.control.view_version(name) is not None
            raise UnknownFeatureView(
                f"view {ref!r} has no version {version}" if known
                else f"no feature view named {name!r} (see `falaj features list`)"
            )  # fmt: skip
        return View(
            name=row["name"], version=row["version"], kind=row["kind"], entity=row["entity"],
            table=row["source_table"], features=row["features"],
            ttl=timedelta(seconds=row["ttl_seconds"]) if row["ttl_seconds"] is not None else None,
            definition=row["definition"], fingerprint=row["fingerprint"],
            created_at=row["created_at"], created_by=row["created_by"],
        )  # fmt: skip

    def _typed(self, view: View) -> View:
        """The view with the types its tables give now (declared before they had data)."""
        d = view.definition
        if view.kind == "sql":
            missing = [t for t in d["tables"] if self.features.column_types(t) is None]
            if missing:
                raise BadInput(f"view {view.ref}: table {missing[0]!r} has no data yet, so the "
                               "view's columns are unknown; ingest into it first")  # fmt: skip
            return _replace(view, self._sql_features(d, f"view {view.ref}"))
        types = self.features.column_types(view.table)
        if types is None:
            raise BadInput(f"view {view.ref}: table {view.table!r} has no data yet, so the "
                           "types of its columns are unknown; ingest into it first")  # fmt: skip
        keys = {d["entity"], d["event_time"], d["created_time"]}
        if d["columns"] is None and view.kind == "columns":  # personal columns never (BLOB)
            return _replace(view, {c: t for c, t in types.items() if c not in keys and t != "BLOB"})
        features = {}
        for c, t in view.features.items():
            if t is None:
                if c not in types:
                    raise BadInput(f"view {view.ref}: table {view.table!r} has no column {c!r}")
                t = types[c]
            features[c] = t
        return _replace(view, features)

    def list(self, actor: Actor) -> builtins.list[dict[str, Any]]:
        """The latest version of every view."""
        require(actor, "features.read")
        return [
            {"view": r["name"], "version": r["version"], "versions": r["versions"],
             "kind": r["kind"], "entity": r["entity"], "table": r["source_table"],
             "features": builtins.list(r["features"]),
             "ttl": r["definition"].get("ttl"), "fingerprint": r["fingerprint"],
             "created_at": r["created_at"], "created_by": r["created_by"]}
            for r in self.control.latest_views()
        ]  # fmt: skip

    def show(self, ref: str, actor: Actor) -> dict[str, Any]:
        """One version (the latest by default): definition, columns and types, entity,
        TTL, fingerprint, who and when, and every version of the view."""
        require(actor, "features.read")
        view = self._view(ref)
        note = None
        try:
            if not view.features or None in view.features.values():
                view = self._typed(view)
        except BadInput as exc:
            note = exc.message
        return {
            "view": view.name, "version": view.version, "ref": view.ref, "kind": view.kind,
            "entity": view.entity, "table": view.table,
            "event_time": view.definition.get("event_time"),
            "created_time": view.definition.get("created_time"),
            "features": view.features, "ttl": view.definition.get("ttl"),
            "definition": view.definition, "fingerprint": view.fingerprint,
            "created_at": view.created_at, "created_by": view.created_by, "note": note,
            "versions": [{"version": r["version"], "fingerprint": r["fingerprint"],
                          "created_at": r["created_at"], "created_by": r["created_by"]}
                         for r in self.control.view_versions(view.name)],
        }  # fmt: skip

    def feature_rows(
        self,
        view: View,
        actor: Actor,
        as_of: datetime | str | None = None,
        entities: pa.Array | pa.ChunkedArray | builtins.list | None = None,
        since: datetime | str | None = None,
    ) -> pa.Table:
        """The view's rows: its entity column, ``_event_time``, ``_created_time``,
        ``_seq``, then its features. ``as_of`` drops rows ingested after it, ``since``
        keeps rows with ``_event_time >= since``, ``entities`` keeps those entities."""
        require(actor, "features.read")
        if not isinstance(view, View):
            raise BadInput(f"expected a View (from resolve), got {type(view).__name__}")
        if not view.features or None in view.features.values():
            view = self._typed(view)
        as_of = utc_naive(as_of, "as_of")
        since = utc_naive(since, "since")
        if entities is not None and not isinstance(entities, pa.Array | pa.ChunkedArray):
            entities = pa.array(entities)
        d = view.definition
        try:
            if view.kind == "sql":
                return self.features.sql_view_rows(
                    d["sql"], d["tables"], view.entity, d["event_time"], d["created_time"],
                    builtins.list(view.features), as_of, since, entities,
                )  # fmt: skip
            if view.kind == "columns":
                return self.features.table_view_rows(
                    view.table, view.entity, d["event_time"], d["created_time"],
                    {c: c for c in view.features}, as_of, since, entities,
                )  # fmt: skip
            return self._transformed(view, as_of, since, entities)
        except BadInput as exc:
            raise BadInput(f"view {view.ref}: {exc.message}") from None

    def _transformed(
        self,
        view: View,
        as_of: datetime | None,
        since: datetime | None,
        entities: pa.Array | pa.ChunkedArray | None,
    ) -> pa.Table:
        d = view.definition
        steps = d["transforms"]
        passthrough = d["columns"] or []
        inputs = {c: c for c in passthrough}
        source = {t["name"]: f"_in{i}" for i, t in enumerate(steps)}
        inputs |= {f"_in{i}": t["column"] for i, t in enumerate(steps)}
        # Rows older than the widest window cannot reach a row at or after `since`.
        widest = max((w for t in steps if (w := tf.window(t)) is not None), default=None)
        history = since - widest if since is not None and widest is not None else since
        rows = self.features.table_view_rows(
            view.table, view.entity, d["event_time"], d["created_time"], inputs,
            as_of, history, entities, ordered=True,
        )  # fmt: skip
        computed = tf.compute(rows, view.entity, steps, source)
        cols = [view.entity, *KEY_COLUMNS, *passthrough]
        out = rows.select(cols)
        for t in steps:
            out = out.append_column(t["name"], computed[t["name"]])
        if since is not None and widest is not None:
            out = out.filter(pc.greater_equal(out.column("_event_time"),
                                              pa.scalar(since, pa.timestamp("us"))))  # fmt: skip
        return out


def _replace(view: View, features: dict[str, str]) -> View:
    return View(**{**view.__dict__, "features": features})
