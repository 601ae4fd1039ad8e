"""Scaling transforms. NumPy reference for now; accelerated backends follow."""

from __future__ import annotations

from typing import Any

import numpy as np


class StandardScaler:
    """Subtract the fitted mean, divide by the fitted (population) standard deviation.

    Constant columns get scale 1, as in scikit-learn, so they transform to zero.
    """

    def __init__(self) -> None:
        pass

    def fit(self, X: np.ndarray) -> StandardScaler:
        X = _as_2d_float(X, "X")
        if X.shape[0] == 0:
            raise ValueError("StandardScaler.fit: X has no rows")
        if not np.isfinite(X).all():
            raise ValueError("StandardScaler.fit: X contains NaN or infinity")
        self.n_samples_seen_ = X.shape[0]
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"StandardScaler.transform: X has {X.shape[1]} columns, fitted on {self.mean_.shape[0]}"
            )
        return (X - self.mean_) / self.scale_

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "standard_scaler",
            "n_samples_seen": int(self.n_samples_seen_),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardScaler:
        self = cls()
        self.n_samples_seen_ = int(d["n_samples_seen"])
        self.mean_ = np.asarray(d["mean"], dtype=np.float64)
        self.scale_ = np.asarray(d["scale"], dtype=np.float64)
        return self


def _as_2d_float(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional, got shape {X.shape}")
    return X
