"""The online store: each entity's latest feature row per view, materialized from the
offline tables and read by entity id for serving.

    app.online.materialize("loans", actor)
    app.online.get_online_features(["loans:income", "loans:age"],
                                   [{"customer_id": "c1"}], actor)

``materialize`` writes, per entity, the view's latest row (by event time, then created
time, then ingest sequence) into the view version's online table in features.duckdb,
guarded by event time: a row older than the one already there never replaces it.

Reads do no SQL: each materialized view version is held in memory as a dict from entity
key to its row, loaded at first use; a materialization in this process puts the rows it
wrote into what is held. Another process cannot materialize while this one holds features.duckdb open
(DuckDB's lock keeps it out), but a counter beside the online rows is compared at most
once every ``recheck_s`` seconds all the same, so a store changed underneath is noticed.
A value older than its view's TTL reads as null with the status ``OUTSIDE_MAX_AGE``, the
same TTL that training sets honour.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from appliance.auth import Actor, require
from appliance.errors import BadInput, NotFound
from appliance.features.training_sets import (
    parse_features,
    parse_time,
    select_features,
    time_text,
)
from appliance.features.views import FeatureViews
from appliance.stores import ControlStore, FeatureStore

# Feast's field statuses: a value read; a row read whose value is null; no row for the
# entity; a row older than the view's TTL (its values read as null).
PRESENT, NULL_VALUE = "PRESENT", "NULL_VALUE"
NOT_FOUND, OUTSIDE_MAX_AGE = "NOT_FOUND", "OUTSIDE_MAX_AGE"
INTERNAL = ("_event_time", "_created_time", "_seq")
MAX_PLANS = 1024  # feature lists whose resolution is kept


@dataclass
class _Held:
    """One materialized view version in memory: entity key -> (event time, *values)."""

    view: str
    version: int
    entity: str
    columns: list[str]  # the feature columns, in the order of the values in a row
    rows: dict[Any, tuple]
    key_kind: type | None  # int or str: what a request's key is converted to


@dataclass
class _Group:
    """The part of a read that one view version answers."""

    ref: str
    entity: str
    held: _Held | None  # None: never materialized, every value is NOT_FOUND
    picks: list[tuple[str, int]]  # (output name, index in a held row)
    ttl: timedelta | None


def _key_kind(t: pa.DataType) -> type | None:
    if pa.types.is_integer(t):
        return int
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return str
    return None


def jsonable(value: Any) -> Any:
    """A feature value as JSON can carry it: times as ISO text, decimals as numbers,
    NaN and infinities as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return time_text(value) if value.tzinfo is None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    """``get_online_features``'s result with every value JSON can carry."""
    return {
        "features": result["features"],
        "results": [
            {
                "entity": r["entity"],
                "values": {k: jsonable(v) for k, v in r["values"].items()},
                "statuses": r["statuses"],
                "event_times": {k: jsonable(v) for k, v in r["event_times"].items()},
            }
            for r in result["results"]
        ],
    }


class OnlineStore:
    recheck_s = 1.0  # how often a read compares the store's counter with what it holds

    def __init__(self, views: FeatureViews, features: FeatureStore, control: ControlStore) -> None:
        self.views = views
        self.features = features
        self.control = control
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int], _Held] = {}
        self._meta: dict[tuple[str, int], dict[str, Any]] | None = None
        self._counter = -1
        self._checked = 0.0
        self._plans: dict[tuple[tuple[str, ...], bool], tuple[list[str], list[_Group]]] = {}

    # -- writing ------------------------------------------------------------------------------

    def materialize(
        self, view_ref: str, actor: Actor, since: str | datetime | None = None
    ) -> dict[str, Any]:
        """Write each entity's latest row of a view (``VIEW`` or ``VIEW@N``; with
        ``since``, of its rows with event time at or after it) into the online store;
        an older row never overwrites a newer one already there. One
        ``features.materialize`` audit event.

        The rows commit in features.duckdb first, the audit event in control.db second.
        A crash between the two leaves online rows newer than any event says, which is
        harmless: they are the rows the next materialization would write anyway, and
        nothing is lost or read wrong."""
        require(actor, "features.define")
        since_dt = None if since is None else parse_time(since, "since")
        view = self.views.resolve(view_ref, actor)
        rows = self.views.feature_rows(view, actor, since=since_dt)
        keep = [view.entity, *INTERNAL, *view.features]
        rows = rows.select([c for c in keep if c in rows.column_names])
        at = datetime.now(UTC).replace(tzinfo=None)
        with self._lock:
            with self.features.transaction() as tx:
                r = tx.upsert_online(view.name, view.version, view.ref, view.entity, rows, at)
            details = {"view": view.ref, "rows_written": r["written"], "entities": r["entities"],
                       "since": time_text(since_dt)}  # fmt: skip
            with self.control.transaction() as tx:
                tx.append_audit(actor, "features.materialize", view.ref, details)
            self._written(view.name, view.version, r)
        return {
            "view": view.ref,
            "rows_read": rows.num_rows,
            "rows_written": r["written"],
            "entities": r["entities"],
            "newest_event": time_text(r["newest_event"]),
            "since": time_text(since_dt),
            "materialized_at": time_text(at),
        }

    def _written(self, view: str, version: int, r: dict[str, Any]) -> None:
        """After this process materialized (under the lock): the rows written go into
        what is held of that view; had another writer changed the store since it was
        loaded, everything is dropped instead, to be loaded again."""
        held = self._held.get((view, version))
        if self._meta is None or r["counter"] != self._counter + 1:
            self._forget()
            return
        if held is not None:
            held.rows.update(_rows_of(r["rows"], held.entity, held.columns))
        self._plans.clear()  # a new version online changes what "VIEW" reads
        self._meta = {(v["view"], v["version"]): v for v in self.features.online_views()}
        self._counter = r["counter"]

    def _forget(self) -> None:
        """Drop what is held, to be loaded again at the next read (under the lock)."""
        self._held.clear()
        self._plans.clear()
        self._meta = None

    # -- what is held in memory ------------------------------------------------------------

    def _current(self) -> None:
        """Reload when another writer changed the online rows (checked once per
        ``recheck_s``)."""
        now = time.monotonic()
        if self._meta is not None and now - self._checked < self.recheck_s:
            return
        with self._lock:
            counter = self.features.online_counter()
            self._checked = now
            if self._meta is None or counter != self._counter:
                self._forget()
                self._meta = {(v["view"], v["version"]): v for v in self.features.online_views()}
                self._counter = counter

    def _load(self, view: str, version: int) -> _Held | None:
        key = (view, version)
        held = self._held.get(key)
        if held is not None:
            return held
        with self._lock:
            meta = (self._meta or {}).get(key)
            if meta is None:
                return None
            table = self.features.online_rows(view, version)
            if table is None:
                return None
            entity = meta["entity_col"]
            columns = [c for c in meta["columns"] if c in table.column_names]
            held = _Held(view, version, entity, columns, _rows_of(table, entity, columns),
                         _key_kind(table.schema.field(entity).type))  # fmt: skip
            self._held[key] = held
            return held

    def _plan(self, features: tuple[str, ...], actor: Actor, full_names: bool):
        """Output names and per-view groups for a feature list (cached until the next
        materialization). ``VIEW`` reads the latest materialized version of the view."""
        plan = self._plans.get((features, full_names))
        if plan is not None:
            return plan
        refs = parse_features(list(features))
        meta = self._meta or {}
        latest: dict[str, int] = {}
        for name, version in meta:
            latest[name] = max(version, latest.get(name, 0))
        resolved: dict[str, str] = {}
        for r in refs:  # an unversioned ref means the version the online store holds
            if "@" not in r.view and r.view in latest:
                resolved[r.view] = f"{r.view}@{latest[r.view]}"
        refs = [type(r)(resolved.get(r.view, r.view), r.column, r.text) for r in refs]
        selected = select_features(self.views, refs, actor, full_names)
        groups: dict[str, _Group] = {}
        for s in selected:
            g = groups.get(s.view.ref)
            if g is None:
                held = self._load(s.view.name, s.view.version)
                g = groups[s.view.ref] = _Group(s.view.ref, s.view.entity, held, [], s.view.ttl)
            index = (
                g.held.columns.index(s.column) + 1 if g.held and s.column in g.held.columns else -1
            )
            g.picks.append((s.name, index))
        plan = ([s.name for s in selected], list(groups.values()))
        if len(self._plans) > MAX_PLANS:
            self._plans.clear()
        self._plans[(features, full_names)] = plan
        return plan

    # -- reading ----------------------------------------------------------------------------

    def get_online_features(
        self,
        features: list[str],
        entities: list[dict[str, Any]],
        actor: Actor,
        full_names: bool = False,
    ) -> dict[str, Any]:
        """The latest values of ``features`` (``VIEW:COL``, ``VIEW@N:COL``, ``VIEW:*``)
        for each entity (``{"customer_id": "c1"}``), in request order: per entity its
        keys, the values by output name, a status per value (``PRESENT``, ``NULL_VALUE``,
        ``NOT_FOUND``, ``OUTSIDE_MAX_AGE`` when older than the view's TTL: the value
        reads as null) and
        each view's event time of the row read. Unknown views or columns and entities
        missing a key are a ``BadInput`` naming them."""
        require(actor, "features.read")
        if not isinstance(features, list | tuple) or not features:
            raise BadInput("features: give a list of VIEW:COLUMN references")
        if not isinstance(entities, list | tuple):
            raise BadInput('entities: give a list of objects like {"customer_id": "c1"}')
        self._current()
        try:
            names, groups = self._plan(tuple(features), actor, full_names)
        except TypeError:  # an unhashable item in features
            parse_features(list(features))
            raise
        now = datetime.now(UTC).replace(tzinfo=None)
        results = []
        for i, item in enumerate(entities):
            if not isinstance(item, dict):
                raise BadInput(f'entities[{i}]: expected an object like {{"customer_id": "c1"}}')
            values: dict[str, Any] = {}
            statuses: dict[str, str] = {}
            event_times: dict[str, Any] = {}
            keys: dict[str, Any] = {}
            for g in groups:
                if g.entity not in item:
                    raise BadInput(
                        f"entities[{i}]: missing key {g.entity!r} (the entity of view {g.ref})"
                    )
                key = item[g.entity]
                keys[g.entity] = key
                row = None
                if g.held is not None:
                    row = g.held.rows.get(_convert(key, g.held.key_kind, i, g.entity))
                if row is None:
                    status, row_time = NOT_FOUND, None
                elif g.ttl is not None and row[0] < now - g.ttl:
                    status, row_time = OUTSIDE_MAX_AGE, row[0]
                else:
                    status, row_time = PRESENT, row[0]
                event_times[g.ref] = row_time
                for name, index in g.picks:
                    if status != PRESENT or index < 0:
                        values[name] = None
                        statuses[name] = status if index >= 0 else NOT_FOUND
                    else:
                        value = values[name] = row[index]
                        statuses[name] = PRESENT if value is not None else NULL_VALUE
            results.append({"entity": keys, "values": values, "statuses": statuses,
                            "event_times": event_times})  # fmt: skip
        return {"features": names, "results": results}

    def freshness(self, actor: Actor) -> list[dict[str, Any]]:
        """Per materialized view version: the last materialization's time, the newest
        event time held, and how many entities (for the dashboard)."""
        require(actor, "features.read")
        return [
            {
                "view": v["ref"],
                "name": v["view"],
                "version": v["version"],
                "entity": v["entity_col"],
                "features": v["columns"],
                "materialized_at": time_text(v["materialized_at"]),
                "newest_event": time_text(v["newest_event"]),
                "entities": v["entities"],
            }
            for v in self.features.online_views()
        ]

    def point_query(self, view_ref: str, key: Any, actor: Actor) -> dict[str, Any]:
        """One entity's online row read straight from features.duckdb (no memory held):
        what the benchmark compares the in-memory read with."""
        require(actor, "features.read")
        view = self.views.resolve(view_ref, actor)
        row = self.features.online_point(view.name, view.version, view.entity, key)
        if row is None:
            raise NotFound(f"view {view.ref}: no online row for {view.entity} = {key!r}")
        return row


def _rows_of(table: pa.Table, entity: str, columns: list[str]) -> dict[Any, tuple]:
    """Online rows as held in memory: entity key -> (event time, *values)."""
    keys = table.column(entity).to_pylist()
    values = [table.column("_event_time").to_pylist()]
    values += [table.column(c).to_pylist() for c in columns]
    return dict(zip(keys, zip(*values, strict=True), strict=True))


def _convert(key: Any, kind: type | None, i: int, entity: str) -> Any:
    """A request's key as the type the view's entity column holds ("42" -> 42)."""
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise BadInput(f"entities[{i}]: key {entity!r} must be a string or a number, not "
                       f"{type(key).__name__}")  # fmt: skip
    if kind is None or isinstance(key, kind):
        return key
    if kind is int:
        if isinstance(key, float):
            return int(key) if key.is_integer() else key
        try:
            return int(key)
        except ValueError:
            return key  # not a number: no such entity
    return str(key)
