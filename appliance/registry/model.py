"""A trained model as training writes it and serving loads it: the same code path.

A model is a fitted pipeline (raw columns -> a float matrix: imputation with missing
indicators, categorical encodings, date parts, scaling) and an estimator of one family
(linear, gbt, mlp). The bundle's documents: ``pipeline.json``, the family's
``model.json`` (and ``model.txt`` for LightGBM), ``schema.json`` (raw inputs with their
roles and JSON types, the output, the task, the sensitive attribute and, for a model
trained on feature views, the entity columns and the view column of each input),
``metrics.json``, ``verdict.json`` (the gates) and ``lineage.json``.

Bundles written before pipelines (``transform.json`` + ``impute.json``, numeric inputs
only) still load, through ``_LegacyPipeline``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.errors import BadInput
from appliance.training import families
from appliance.training.pipeline import Input, Pipeline


@dataclass
class Model:
    name: str
    version: int
    pipeline: Any  # Pipeline, or _LegacyPipeline for old bundles
    estimator: Any  # a families.Estimator
    task: str = "binary"
    sensitive: str | None = None
    # {"entities": [column, ...], "features": {input: "VIEW@N:COLUMN"}} when trained on views
    online: dict[str, Any] | None = field(default=None)
    # reference.json: the training reference monitoring compares live traffic with
    # (appliance.monitoring.reference); None in bundles trained before monitoring
    reference: dict[str, Any] | None = field(default=None)
    # the training rows' entity key columns (a record's request key); None in older bundles
    entities: list[str] | None = field(default=None)

    @property
    def inputs(self) -> list[Input]:
        return self.pipeline.inputs

    @property
    def features(self) -> list[str]:
        """The raw input names, in order (what a request record holds)."""
        return [i.name for i in self.pipeline.inputs]

    @property
    def output_name(self) -> str:
        return "probability" if self.task == "binary" else "prediction"

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows of the pipeline's output matrix."""
        # Extreme inputs may overflow to inf or NaN: check_outputs refuses those, quietly.
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(self.estimator.predict(X), dtype=np.float64)

    def design(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return self.pipeline.transform(columns)

    def monitor_vector(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """(n, len(features)) float64 of the raw inputs as monitoring compares them with
        training (``Pipeline.monitor_vector``; legacy bundles: their numeric columns)."""
        return self.pipeline.monitor_vector(columns)

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return self.predict_matrix(self.design(columns))

    def matrix(self, records: Any, where: str = "records") -> np.ndarray:
        """Validate request records (raw values; null is a missing value) into the
        pipeline's matrix; errors name the field."""
        return self.design(self.pipeline.columns_from_records(records, where))

    def matrices(self, records: Any, where: str = "records") -> tuple[np.ndarray, np.ndarray]:
        """``matrix`` and ``monitor_vector`` of the same records, validated once: what
        the model sees, and the raw inputs its decision records keep."""
        columns = self.pipeline.columns_from_records(records, where)
        return self.design(columns), self.monitor_vector(columns)

    def filled_matrices(self, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """``matrices`` for values the online store gave (None where it had none)."""
        return self.matrices(rows, "entities")

    def filled_matrix(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """The matrix for values the online store gave (None where it had none, which
        the pipeline imputes as in training)."""
        return self.matrix(rows, "entities")

    def warm_up(self) -> None:
        """One prediction on a row of nothing but missing values: loads the estimator's
        code paths and proves the imputation answers."""
        proba = self.predict_matrix(self.matrix([dict.fromkeys(self.features)], "warm-up"))
        self.check_outputs(proba, "warm-up")

    def check_outputs(self, proba: np.ndarray, where: str = "records") -> None:
        """Refuse a request whose prediction is not a finite number (values far outside
        anything the model was trained on can overflow its arithmetic)."""
        bad = ~np.isfinite(proba)
        if bad.any():
            i = int(np.argmax(bad))
            raise BadInput(
                f"{where}[{i}]: the model gives no finite prediction for these values; "
                "they lie far outside the range it was trained on"
            )

    def predict_records(self, records: Any, where: str = "records") -> list[float]:
        return self.predict_matrix(self.matrix(records, where)).tolist()

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "inputs": [{"name": i.name, "role": i.role, "type": i.type} for i in self.inputs],
            "output": {"name": self.output_name, "type": "double"},
            "task": self.task,
            "family": self.estimator.family,
            "sensitive": self.sensitive,
        }
        if self.online is not None:
            schema["online"] = self.online
        if self.entities:
            schema["entities"] = self.entities
        return schema

    def documents(self) -> dict[str, Any]:
        return (
            self.estimator.documents()
            | {
                "pipeline.json": self.pipeline.to_dict(),
                "schema.json": self.schema(),
            }
            | ({"reference.json": self.reference} if self.reference is not None else {})
        )

    @classmethod
    def from_files(cls, name: str, version: int, files: dict[str, bytes]) -> Model:
        schema = json.loads(files["schema.json"])
        if "pipeline.json" not in files:
            return _legacy(name, version, files, schema)
        return cls(
            name=name,
            version=version,
            pipeline=Pipeline.from_dict(json.loads(files["pipeline.json"])),
            estimator=families.load(files),
            task=schema.get("task", "binary"),
            sensitive=schema.get("sensitive"),
            online=schema.get("online"),
            reference=json.loads(files["reference.json"]) if "reference.json" in files else None,
            entities=schema.get("entities"),
        )


class _LegacyPipeline:
    """The preprocessing of bundles that predate pipelines: numeric inputs, missing
    values filled with training means, standard scaling."""

    def __init__(self, names: list[str], fill: np.ndarray | None, scaler: Any) -> None:
        self.inputs = [Input(n, "numeric") for n in names]
        self.fill, self.scaler = fill, scaler

    def columns_from_records(self, records: Any, where: str) -> dict[str, np.ndarray]:
        if not isinstance(records, list) or not records:
            raise BadInput(f"{where}: expected a non-empty list of objects {{feature: number}}")
        cols = {i.name: np.empty(len(records)) for i in self.inputs}
        for r, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise BadInput(f"{where}[{r}]: expected an object {{feature: number}}")
            for name, col in cols.items():
                if name not in rec:
                    raise BadInput(f"{where}[{r}].{name}: missing (model needs "
                                   f"{', '.join(cols)})")  # fmt: skip
                v = rec[name]
                if v is None:
                    col[r] = np.nan
                elif isinstance(v, bool) or not isinstance(v, int | float):
                    raise BadInput(f"{where}[{r}].{name}: expected a number, got {json.dumps(v)}")
                else:
                    col[r] = float(v)
        return cols

    def monitor_vector(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        cols = [np.asarray(columns[i.name], dtype=np.float64) for i in self.inputs]
        return np.column_stack(cols).reshape(len(cols[0]), len(cols))

    def transform(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        X = np.column_stack([columns[i.name] for i in self.inputs]).astype(np.float64)
        rows, cols = np.nonzero(np.isnan(X))
        if len(rows):
            if self.fill is None:
                raise BadInput(f"records: {self.inputs[cols[0]].name} is missing and this "
                               "model's bundle holds no values to fill it")  # fmt: skip
            X[rows, cols] = self.fill[cols]
        return self.scaler.transform(X)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError("a legacy bundle is read, never written")


class _LegacyLogistic:
    family = "linear"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(X)


def _legacy(name: str, version: int, files: dict[str, bytes], schema: dict) -> Model:
    from kernels.training import LogisticRegression
    from kernels.transforms import StandardScaler

    names = [f["name"] for f in schema["inputs"]]
    impute = json.loads(files["impute.json"]) if "impute.json" in files else None
    fill = np.array([float(v["value"]) for v in impute["values"]]) if impute else None
    scaler = StandardScaler.from_dict(json.loads(files["transform.json"]))
    estimator = _LegacyLogistic(LogisticRegression.from_dict(json.loads(files["model.json"])))
    return Model(name, version, _LegacyPipeline(names, fill, scaler), estimator,
                 online=schema.get("online"))  # fmt: skip
