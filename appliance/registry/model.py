"""A trained model as training writes it and serving loads it: the same code path.

The bundle's documents: ``model.json`` (the estimator), ``transform.json`` (the fitted
scaler), ``impute.json`` (the training means that fill missing values), ``schema.json``
(input features, in order, the output and, for a model trained on feature views, the
entity columns and the view column of each feature), ``metrics.json`` and
``lineage.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.errors import BadInput
from kernels.training import LogisticRegression
from kernels.transforms import StandardScaler


@dataclass
class Model:
    name: str
    version: int
    features: list[str]
    scaler: StandardScaler
    estimator: LogisticRegression
    fill: list[float] | None = None  # training means; None in bundles that predate them
    # {"entities": [column, ...], "features": {feature: "VIEW@N:COLUMN"}} when trained on views
    online: dict[str, Any] | None = field(default=None)

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """P(label = 1) for rows of raw (unscaled) feature values in schema order."""
        # Extreme inputs may overflow to inf or NaN: check_outputs refuses those, quietly.
        with np.errstate(over="ignore", invalid="ignore"):
            return self.estimator.predict_proba(self.scaler.transform(X))

    def matrix(self, records: Any, where: str = "records") -> np.ndarray:
        """Validate request records into a float matrix; errors name the field."""
        if not isinstance(records, list) or not records:
            raise BadInput(f"{where}: expected a non-empty list of objects {{feature: number}}")
        # Fast path for well-formed input; anything odd is re-read by the precise checker.
        try:
            rows = [[rec[f] for f in self.features] for rec in records]
        except (KeyError, TypeError, IndexError):
            rows = None
        # type() is exact on purpose: bool is a subclass of int but not a feature value
        if rows is not None and all(
            type(v) is float or type(v) is int for row in rows for v in row
        ):
            try:
                X = np.array(rows, dtype=np.float64)
            except OverflowError:  # an integer beyond float range
                X = None
            if X is not None and np.isfinite(X).all():
                return X
        return self._checked_matrix(records, where)

    def _checked_matrix(self, records: list, where: str) -> np.ndarray:
        X = np.empty((len(records), len(self.features)))
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise BadInput(f"{where}[{i}]: expected an object {{feature: number}}")
            for j, feat in enumerate(self.features):
                if feat not in rec:
                    raise BadInput(
                        f"{where}[{i}].{feat}: missing (model {self.name} needs {', '.join(self.features)})"
                    )
                X[i, j] = _number(rec[feat], f"{where}[{i}].{feat}")
        return X

    def filled_matrix(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """A float matrix from feature values the online store gave (None where it had
        none), missing ones filled with the training means."""
        X = np.array(
            [[np.nan if r.get(f) is None else r[f] for f in self.features] for r in rows],
            dtype=np.float64,
        )
        if self.fill is not None:
            rows_, cols = np.nonzero(np.isnan(X))
            X[rows_, cols] = np.asarray(self.fill)[cols]
        return X

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

    def documents(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "inputs": [{"name": f, "type": "double"} for f in self.features],
            "output": {"name": "probability", "type": "double"},
        }
        if self.online is not None:
            schema["online"] = self.online
        docs = {
            "model.json": self.estimator.to_dict(),
            "transform.json": self.scaler.to_dict(),
            "schema.json": schema,
        }
        if self.fill is not None:
            docs["impute.json"] = {
                "strategy": "training mean",
                "values": [
                    {"name": f, "value": v} for f, v in zip(self.features, self.fill, strict=True)
                ],
            }
        return docs

    @classmethod
    def from_files(cls, name: str, version: int, files: dict[str, bytes]) -> Model:
        docs = {k: json.loads(v) for k, v in files.items()}
        features = [f["name"] for f in docs["schema.json"]["inputs"]]
        impute = docs.get("impute.json")
        return cls(
            name=name,
            version=version,
            features=features,
            scaler=StandardScaler.from_dict(docs["transform.json"]),
            estimator=LogisticRegression.from_dict(docs["model.json"]),
            fill=[float(v["value"]) for v in impute["values"]] if impute else None,
            online=docs["schema.json"].get("online"),
        )


def _number(value: Any, where: str) -> float:
    # bool is an int in Python, but true/false is not a feature value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{where}: expected a number, got {json.dumps(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise BadInput(f"{where}: the integer is too large for a 64-bit float") from None
    if not math.isfinite(number):
        raise BadInput(f"{where}: expected a finite number, got {value}")
    return number
