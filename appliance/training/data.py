"""The rows a spec trains on: a feature table or a registered training set, read as
Arrow in event-time order, with column roles, the label, the task and what the lineage
names about the data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.auth import Actor
from appliance.errors import BadInput
from appliance.features.training_sets import TrainingSets
from appliance.stores import FeatureStore
from appliance.training.pipeline import Input
from appliance.training.roles import infer_roles
from appliance.training.specs import Spec

MIN_ROWS = 20


@dataclass
class TrainingData:
    where: str  # "table 'loans'" or "training set ts_…", for errors
    table: pa.Table  # labelled rows in event-time order
    y: np.ndarray
    times: np.ndarray  # event time, µs
    task: str
    inputs: list[Input]
    roles: dict[str, str]  # every column's role, including id / ignore
    sensitive: np.ndarray | None  # the sensitive attribute's values as text (None: missing)
    lineage: dict[str, Any]
    online: dict[str, Any] | None = field(default=None)
    entities: list[str] = field(default_factory=list)  # the rows' entity key columns


def load(spec: Spec, features: FeatureStore, training_sets: TrainingSets | None,
         actor: Actor) -> TrainingData:  # fmt: skip
    if spec.table is not None:
        table, keys, lineage, view_of = _from_table(spec, features)
        if training_sets is not None:  # subjects who withdrew consent for model training
            table, excluded = training_sets.consented(table, set(keys["entities"]))
            if excluded:
                lineage["consent_excluded"] = excluded
    else:
        if training_sets is None:
            raise BadInput("training sets are not available here")
        table, keys, lineage, view_of = _from_training_set(spec, training_sets, actor)
    where = lineage["source"]
    if spec.label not in table.column_names:
        raise BadInput(f"{where} has no column {spec.label!r} "
                       f"(columns: {', '.join(table.column_names)})")  # fmt: skip
    for col in (spec.sensitive, *(spec.features or ()), *spec.roles):
        if col is not None and col not in table.column_names:
            raise BadInput(f"{spec.where}: {where} has no column {col!r}")
    table = table.filter(pc.is_valid(table[spec.label]))
    if table.num_rows < MIN_ROWS:
        raise BadInput(
            f"{where} has {table.num_rows} labelled rows; training needs at least {MIN_ROWS}"
        )
    y, task = _label(table[spec.label], spec, where)

    exclude = {spec.label, *keys["skip"]}
    if spec.sensitive is not None:
        exclude.add(spec.sensitive)
    if spec.features is not None:
        for col in spec.features:  # asked for by name: say why it cannot be, not drop it
            if col in exclude:
                what = ("the label" if col == spec.label else "the sensitive attribute"
                        if col == spec.sensitive else "an entity key or timestamp column")  # fmt: skip
                raise BadInput(f"{spec.where}: features: {col!r} is {what} of {where}, "
                               "not a model input")  # fmt: skip
        exclude |= set(table.column_names) - set(spec.features)
    roles = infer_roles(table, exclude, spec.roles)
    inputs = [Input(c, r) for c, r in roles.items() if r in ("numeric", "categorical", "datetime")]
    if not inputs:
        raise BadInput(f"{where} has no feature columns besides {spec.label!r} "
                       f"(roles: {roles or 'none'})")  # fmt: skip
    sensitive = None
    if spec.sensitive is not None:
        sensitive = np.array(
            [None if v is None else str(v) for v in table[spec.sensitive].to_pylist()], dtype=object
        )
    times = pc.cast(table[keys["timestamp"]], pa.timestamp("us")).cast(pa.int64())
    times = times.fill_null(0).to_numpy(zero_copy_only=False)
    online = None
    if view_of is not None:
        online = {"entities": keys["entities"],
                  "features": {i.name: view_of[i.name] for i in inputs if i.name in view_of}}  # fmt: skip
        if len(online["features"]) != len(inputs):
            other = next(i.name for i in inputs if i.name not in view_of)
            raise BadInput(f"{where}: input {other!r} is not a feature view column; a model "
                           "served from the online store can take only view columns")  # fmt: skip
    lineage |= {
        "label": spec.label,
        "rows": table.num_rows,
        "event_time_from_us": int(times.min()),
        "event_time_to_us": int(times.max()),
        "data_fingerprint": fingerprint(table),
        "roles": roles,
    }
    return TrainingData(where, table, y, times, task, inputs, roles, sensitive, lineage, online,
                        list(keys["entities"]))  # fmt: skip


def _from_table(spec: Spec, fs: FeatureStore):
    keys = fs.table_keys(spec.table)
    if keys is None:
        raise BadInput(f"table {spec.table!r} does not exist "
                       f"(tables: {', '.join(fs.table_names()) or 'none'})")  # fmt: skip
    entity, timestamp = keys
    types = fs.column_types(spec.table) or {}
    if spec.label not in types:
        raise BadInput(
            f"table {spec.table!r} has no column {spec.label!r} (columns: {', '.join(types)})"
        )
    table = fs.labelled_rows(spec.table, spec.label, timestamp, entity)
    created = fs.created_column(spec.table)
    skip = {entity, timestamp} | ({created} if created else set())
    skip |= {c for c, t in types.items() if t == "BLOB"}  # personal columns: sealed, never inputs
    batches = [b["batch_id"] for b in fs.ingest_batches() if b["table_name"] == spec.table]
    lineage = {"source": f"table {spec.table!r}", "table": spec.table,
               "ingest_batches": len(batches), "last_batch": batches[-1] if batches else None}  # fmt: skip
    return table, {"timestamp": timestamp, "skip": skip, "entities": [entity]}, lineage, None


def _from_training_set(spec: Spec, training_sets: TrainingSets, actor: Actor):
    record, table = training_sets.load(spec.training_set, actor)
    n_features = len(record["features"])
    names = record["columns"][len(record["columns"]) - n_features :]
    view_of = dict(zip(names, record["features"], strict=True))
    entities = sorted({training_sets.views.resolve(v["ref"], actor).entity
                       for v in record["views"]})  # fmt: skip
    time_col = record["timestamp_col"]
    # A spine's own columns (entity keys, its time) are not features; its extra columns
    # (the label, say) may be.
    skip = {time_col, *entities}
    lineage = {"source": f"training set {record['id']}", "table": f"training-set:{record['id']}",
               "training_set": {"id": record["id"], "fingerprint": record["fingerprint"],
                                "file_sha256": record["file_sha256"], "as_of": record["as_of"],
                                "views": record["views"]}}  # fmt: skip
    # rows in event-time order (stable: spine order breaks ties), as a table's are
    times = pc.cast(table[time_col], pa.timestamp("us")).cast(pa.int64()).fill_null(0)
    table = table.take(np.argsort(times.to_numpy(zero_copy_only=False), kind="stable"))
    return table, {"timestamp": time_col, "skip": skip, "entities": entities}, lineage, view_of


def _label(column: pa.ChunkedArray, spec: Spec, where: str) -> tuple[np.ndarray, str]:
    t = column.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise BadInput(f"{where}, column {spec.label!r}: the label must be numeric (0/1 for "
                       f"classification), not {t}")  # fmt: skip
    y = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if not np.isfinite(y).all():
        raise BadInput(f"{where}, column {spec.label!r}: labels must be finite numbers")
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    task = spec.task or ("binary" if binary else "regression")
    if task == "binary" and not binary:
        bad = y[~np.isin(y, (0.0, 1.0))][0]
        raise BadInput(f"{where}, column {spec.label!r}: labels must be 0 or 1, found {bad:g}")
    return y, task


def fingerprint(table: pa.Table) -> str:
    """SHA-256 over the exact rows trained on (Arrow IPC of the columns, in order)."""
    h = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    h.update(sink.getvalue())
    return h.hexdigest()
