"""Training: rows from a feature table, a time-ordered hold-out, fit, evaluate, gate.

Features are the table's (or the training set's) numeric columns other than the
entity, the timestamp and the label. The latest ``holdout_fraction`` of rows by event time is held out: the model is
evaluated on data from after what it learned from, as it will be used. The model that
is evaluated is the one that ships.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.errors import BadInput
from appliance.registry.model import Model
from appliance.stores import FeatureStore
from kernels.stats import accuracy, log_loss, roc_auc
from kernels.training import LogisticRegression
from kernels.transforms import StandardScaler

NUMERIC = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "REAL",
           "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}  # fmt: skip
MIN_ROWS = 20


@dataclass
class TrainingRun:
    model: Model
    metrics: dict[str, Any]
    lineage: dict[str, Any]

    @property
    def gates_passed(self) -> bool:
        return bool(self.metrics["gates"]["passed"])


def feature_columns(fs: FeatureStore, table: str, label: str) -> tuple[list[str], dict[str, str]]:
    keys = fs.table_keys(table)
    if keys is None:
        raise BadInput(
            f"table {table!r} does not exist (tables: {', '.join(fs.table_names()) or 'none'})"
        )
    types = fs.column_types(table) or {}
    if label not in types:
        raise BadInput(f"table {table!r} has no column {label!r} (columns: {', '.join(types)})")
    skip = {*keys, label}
    features = [c for c, t in types.items() if t in NUMERIC and c not in skip]
    if not features:
        raise BadInput(f"table {table!r} has no numeric feature columns besides {label!r}")
    return features, {"entity": keys[0], "timestamp": keys[1]}


def train(
    fs: FeatureStore,
    table: str,
    label: str,
    name: str,
    *,
    holdout_fraction: float = 0.2,
    C: float = 1.0,
) -> TrainingRun:
    """Fit on a feature table's numeric columns."""
    features, keys = feature_columns(fs, table, label)
    X, y, times = fs.training_arrays(table, features, label, keys["timestamp"], keys["entity"])
    return fit(X, y, times, features, name, f"table {table!r}", {"table": table, "label": label},
               holdout_fraction=holdout_fraction, C=C)  # fmt: skip


def fit(
    X: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    features: list[str],
    name: str,
    where: str,
    lineage: dict[str, Any],
    *,
    holdout_fraction: float = 0.2,
    C: float = 1.0,
    online: dict[str, Any] | None = None,
) -> TrainingRun:
    """Fit rows ordered by event time (``times`` in µs), hold out the latest, evaluate and
    gate. ``where`` names the data in errors; ``online`` is the serving contract of a
    model trained on feature views (entity columns and the view column of each feature)."""
    if len(y) < MIN_ROWS:
        raise BadInput(f"{where} has {len(y)} labelled rows; training needs at least {MIN_ROWS}")
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise BadInput(f"{where}, column {lineage['label']!r}: labels must be 0 or 1, "
                       f"found {y[bad][0]:g}")  # fmt: skip

    n_train = int(round(len(y) * (1 - holdout_fraction)))
    if not 0 < n_train < len(y):
        raise BadInput(
            f"holdout_fraction {holdout_fraction} leaves no rows to train or to evaluate"
        )
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    for part, yy in (("training", y_train), ("hold-out", y_test)):
        if yy.min() == yy.max():
            raise BadInput(
                f"{where}: the {part} rows hold only label {yy[0]:g}; both classes are needed"
            )

    # Missing feature values take the training mean (0 after scaling); the bundle keeps
    # the means, so values the online store cannot give are filled the same way.
    with np.errstate(all="ignore"):
        means = np.nanmean(X_train, axis=0)
    means = np.where(np.isnan(means), 0.0, means)
    for M in (X_train, X_test):
        rows, cols_ = np.nonzero(np.isnan(M))
        M[rows, cols_] = means[cols_]

    scaler = StandardScaler().fit(X_train)
    estimator = LogisticRegression(C=C).fit(scaler.transform(X_train), y_train)
    model = Model(name=name, version=0, features=features, scaler=scaler, estimator=estimator,
                  fill=means.tolist(), online=online)  # fmt: skip
    p_test = model.predict_matrix(X_test)
    p_train = model.predict_matrix(X_train)
    baseline = log_loss(y_test, np.full_like(y_test, y_train.mean()))
    metrics = {
        "holdout": {
            "rows": int(len(y_test)),
            "roc_auc": roc_auc(y_test, p_test),
            "accuracy": accuracy(y_test, p_test),
            "log_loss": log_loss(y_test, p_test),
        },
        "train": {
            "rows": int(n_train),
            "roc_auc": roc_auc(y_train, p_train),
            "accuracy": accuracy(y_train, p_train),
            "log_loss": log_loss(y_train, p_train),
        },
        "baseline": {"kind": "training prior", "log_loss": baseline},
    }
    metrics["gates"] = {
        "beats_baseline_log_loss": metrics["holdout"]["log_loss"] < baseline,
        "roc_auc_above_chance": metrics["holdout"]["roc_auc"] > 0.5,
    }
    metrics["gates"]["passed"] = all(metrics["gates"].values())
    lineage = lineage | {
        "features": features,
        "rows": int(len(y)),
        "event_time_from_us": int(times[0]),
        "event_time_to_us": int(times[-1]),
        "holdout_from_us": int(times[n_train]),
        "data_fingerprint": fingerprint(features, X, y),
        "hyperparameters": {"C": C, "holdout_fraction": holdout_fraction},
    }
    return TrainingRun(model, metrics, lineage)


def fingerprint(features: list[str], X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 over the exact training matrix and labels, in training order."""
    h = hashlib.sha256()
    h.update("\x1f".join(features).encode())
    h.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<f8").tobytes())
    return h.hexdigest()
