"""Training: read a feature table or a registered training set, fit, evaluate against a
baseline, gate, and hand the run to the registry. The model that is evaluated is the one
that ships.

A model trained on a training set names it in its lineage and carries, in its schema,
the view column behind each feature and the entity columns: served, it takes
``{"entities": [...]}`` and fills its features from the online store."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.auth import Actor, require
from appliance.errors import BadInput
from appliance.features.training_sets import TrainingSets
from appliance.names import check_name
from appliance.registry import Registry
from appliance.stores import FeatureStore
from appliance.training.logistic import TrainingRun, fit, train

__all__ = ["TrainingRun", "TrainingService"]


class TrainingService:
    def __init__(
        self,
        features: FeatureStore,
        registry: Registry,
        settings: dict,
        training_sets: TrainingSets | None = None,
    ) -> None:
        self.features = features
        self.registry = registry
        self.settings = settings
        self.training_sets = training_sets

    def train(self, table: str, label: str, name: str, actor: Actor) -> dict[str, Any]:
        require(actor, "model.train")
        check_name("model", name)
        run = train(
            self.features, table, label, name,
            holdout_fraction=self.settings["holdout_fraction"], C=self.settings["l2_c"],
        )  # fmt: skip
        return self._register(run, name, actor)

    def train_on_set(self, ref: str, label: str, name: str, actor: Actor) -> dict[str, Any]:
        """Train on a registered training set, named by its id or its file (refused if the
        file changed since it was registered)."""
        require(actor, "model.train")
        check_name("model", name)
        if self.training_sets is None:
            raise BadInput("training sets are not available here")
        record, data = self.training_sets.load(ref, actor)
        where = f"training set {record['id']}"
        names = record["columns"][len(record["columns"]) - len(record["features"]) :]
        view_of = dict(zip(names, record["features"], strict=True))
        if label not in data.column_names:
            raise BadInput(f"{where} has no column {label!r} "
                           f"(columns: {', '.join(data.column_names)})")  # fmt: skip
        features = [n for n in names if n != label and _numeric(data.schema.field(n).type)]
        if not features:
            raise BadInput(f"{where} has no numeric feature columns besides {label!r}")
        time_col = record["timestamp_col"]
        data = data.filter(pc.is_valid(data[label]))
        times = pc.cast(data[time_col], pa.timestamp("us")).cast(pa.int64())
        order = np.argsort(times.to_numpy(zero_copy_only=False), kind="stable")
        data = data.take(order)
        X = np.column_stack(
            [data[f].cast(pa.float64()).to_numpy(zero_copy_only=False) for f in features]
        ).astype(np.float64)
        y = data[label].cast(pa.float64()).to_numpy(zero_copy_only=False)
        entities = sorted({self.training_sets.views.resolve(v["ref"], actor).entity
                           for v in record["views"]})  # fmt: skip
        online = {"entities": entities, "features": {f: view_of[f] for f in features}}
        lineage = {"table": f"training-set:{record['id']}", "label": label,
                   "training_set": {"id": record["id"], "fingerprint": record["fingerprint"],
                                    "file_sha256": record["file_sha256"],
                                    "as_of": record["as_of"], "views": record["views"]}}  # fmt: skip
        run = fit(
            X, y, times.to_numpy(zero_copy_only=False)[order], features, name, where, lineage,
            holdout_fraction=self.settings["holdout_fraction"], C=self.settings["l2_c"],
            online=online,
        )  # fmt: skip
        return self._register(run, name, actor) | {"training_set": record["id"]}

    def _register(self, run: TrainingRun, name: str, actor: Actor) -> dict[str, Any]:
        version = self.registry.register(run, actor)
        return {
            "name": name,
            "version": version,
            "metrics": run.metrics,
            "gates_passed": run.gates_passed,
        }


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
