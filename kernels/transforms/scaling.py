"""Scaling transforms: standard, robust, min-max, quantile clipping and log1p.

NaN policy (all of them): NaN is missing. ``fit`` ignores it (a column with no observed
value is a ValueError); ``transform`` passes it through as NaN. ±inf in ``fit`` is a
ValueError; in ``transform`` it goes through the arithmetic (``(inf - m) / s = inf``).
Inputs may be any numeric dtype; results are float64.

Every estimator takes ``backend=None`` (run where the data lives: NumPy on the Numba CPU
path, CuPy on the GPU) or ``"reference"``, ``"cpu"``, ``"cuda"`` explicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select
from kernels.summary import ColumnSummary
from kernels.transforms._fit import (
    Transformer,
    check_summary,
    fit_quantiles,
    fit_summary,
    floats,
)
from kernels.transforms._inputs import as_2d_float, check_columns, check_fitted, host_or_device


def _apply(name: str, backend: str | None, X: Any, *params: np.ndarray) -> Any:
    module = select("transforms", X, backend=backend, numpy_when_small=True)
    return getattr(module, name)(host_or_device(module, X), *params)


class _ColumnAffine(Transformer):
    """Shared ``transform``: ``(X - shift) / scale`` per column, in one fused kernel."""

    backend: str | None

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def transform(self, X: Any) -> Any:
        shift, scale = self._shift_scale()
        X = as_2d_float(X, "X")
        check_columns(X, len(shift), f"{type(self).__name__}.transform")
        return _apply("center_scale", getattr(self, "backend", None), X, shift, scale)


class StandardScaler(_ColumnAffine):
    """Subtract the fitted mean, divide by the fitted (population) standard deviation.

    Constant columns get scale 1, as in scikit-learn, so they transform to zero. The fit
    is ``ColumnSummary -> state``: ``StandardScaler.from_summary(a.merge(b))`` equals a
    fit over the rows of both partitions.
    """

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def fit(self, X: Any) -> StandardScaler:
        return self._fit_summary(fit_summary(X, "StandardScaler.fit", self.backend))

    @classmethod
    def from_summary(cls, summary: ColumnSummary, backend: str | None = None) -> StandardScaler:
        check_summary(summary, "StandardScaler.from_summary")
        return cls(backend)._fit_summary(summary)

    def _fit_summary(self, summary: ColumnSummary) -> StandardScaler:
        n = summary.count.astype(np.float64)
        mean, var = summary.mean, summary.var
        eps = np.finfo(np.float64).eps
        # Rounding leaves a tiny variance on constant columns; scikit-learn's bound for it.
        with np.errstate(over="ignore", invalid="ignore"):
            bound = n * eps * var + (n * mean * eps) ** 2
            constant = (summary.min == summary.max) | (np.isfinite(var) & (var <= bound))
        scale = np.where(constant, 1.0, np.sqrt(var))
        bad = np.flatnonzero(~np.isfinite(scale) | ~np.isfinite(mean))
        if len(bad):
            raise ValueError(
                f"StandardScaler.fit: column {int(bad[0])}'s mean or standard deviation "
                "overflows float64; rescale it (e.g. log1p) before standard scaling"
            )
        self.n_samples_seen_ = summary.n_rows
        self.mean_ = mean
        self.scale_ = scale
        return self

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "mean_")
        return self.mean_, self.scale_

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "mean_")
        return {
            "kind": "standard_scaler",
            "n_samples_seen": int(self.n_samples_seen_),
            "mean": floats(self.mean_),
            "scale": floats(self.scale_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StandardScaler:
        self = cls()
        self.n_samples_seen_ = int(d["n_samples_seen"])
        self.mean_ = np.asarray(d["mean"], dtype=np.float64)
        self.scale_ = np.asarray(d["scale"], dtype=np.float64)
        return self


class MinMaxScaler(_ColumnAffine):
    """Map each column's fitted [min, max] onto [0, 1]: ``(X - min) / (max - min)``.

    Constant columns get range 1 (they map to 0). Values outside the fitted range map
    outside [0, 1]; nothing is clipped. Mergeable: ``from_summary``.
    """

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def fit(self, X: Any) -> MinMaxScaler:
        return self._fit_summary(fit_summary(X, "MinMaxScaler.fit", self.backend))

    @classmethod
    def from_summary(cls, summary: ColumnSummary, backend: str | None = None) -> MinMaxScaler:
        check_summary(summary, "MinMaxScaler.from_summary")
        return cls(backend)._fit_summary(summary)

    def _fit_summary(self, summary: ColumnSummary) -> MinMaxScaler:
        with np.errstate(over="ignore"):
            span = summary.max - summary.min
        bad = np.flatnonzero(~np.isfinite(span))
        if len(bad):
            raise ValueError(
                f"MinMaxScaler.fit: column {int(bad[0])}'s range max - min overflows float64; "
                "rescale it before min-max scaling"
            )
        self.data_min_ = summary.min
        self.data_max_ = summary.max
        self.data_range_ = np.where(span > 0, span, 1.0)
        return self

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "data_min_")
        return self.data_min_, self.data_range_

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "data_min_")
        return {
            "kind": "min_max_scaler",
            "data_min": floats(self.data_min_),
            "data_max": floats(self.data_max_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaler:
        lo = np.asarray(d["data_min"], dtype=np.float64)
        hi = np.asarray(d["data_max"], dtype=np.float64)
        return cls()._fit_summary(
            ColumnSummary(
                count=np.ones(len(lo), dtype=np.int64),
                nan_count=np.zeros(len(lo), dtype=np.int64),
                sum=lo,
                m2=np.zeros(len(lo)),
                min=lo,
                max=hi,
            )
        )


class RobustScaler(_ColumnAffine):
    """Subtract the median, divide by the interquartile range (scikit-learn's defaults).

    Quantiles interpolate linearly between order statistics of the non-NaN values; a
    zero range becomes 1. Quantiles do not merge across partitions: fit on the whole column.
    """

    def __init__(
        self, quantile_range: tuple[float, float] = (25.0, 75.0), backend: str | None = None
    ) -> None:
        self.quantile_range = quantile_range
        self.backend = backend

    def fit(self, X: Any) -> RobustScaler:
        q_lo, q_hi = self.quantile_range
        if not 0 <= q_lo < q_hi <= 100:
            raise ValueError(
                f"RobustScaler: quantile_range must satisfy 0 <= low < high <= 100, "
                f"got {self.quantile_range}"
            )
        q = fit_quantiles(X, [0.5, q_lo / 100, q_hi / 100], "RobustScaler.fit", self.backend)
        self.center_ = q[0]
        iqr = q[2] - q[1]
        self.scale_ = np.where(iqr > 0, iqr, 1.0)
        return self

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "center_")
        return self.center_, self.scale_

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "center_")
        return {
            "kind": "robust_scaler",
            "quantile_range": list(self.quantile_range),
            "center": floats(self.center_),
            "scale": floats(self.scale_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RobustScaler:
        self = cls(quantile_range=tuple(d["quantile_range"]))
        self.center_ = np.asarray(d["center"], dtype=np.float64)
        self.scale_ = np.asarray(d["scale"], dtype=np.float64)
        return self


class QuantileClipper(Transformer):
    """Clip each column to its fitted [lower, upper] quantiles (winsorising).

    NaN stays NaN; ±inf clips to the bounds. Fit on the whole column (quantiles do not merge).
    """

    def __init__(self, lower: float = 0.01, upper: float = 0.99, backend: str | None = None):
        self.lower = lower
        self.upper = upper
        self.backend = backend

    def fit(self, X: Any) -> QuantileClipper:
        if not 0 <= self.lower <= self.upper <= 1:
            raise ValueError(
                f"QuantileClipper: need 0 <= lower <= upper <= 1, got {self.lower}, {self.upper}"
            )
        q = fit_quantiles(X, [self.lower, self.upper], "QuantileClipper.fit", self.backend)
        self.lower_, self.upper_ = q[0], q[1]
        return self

    def transform(self, X: Any) -> Any:
        check_fitted(self, "lower_")
        X = as_2d_float(X, "X")
        check_columns(X, len(self.lower_), "QuantileClipper.transform")
        return _apply("clip", self.backend, X, self.lower_, self.upper_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "lower_")
        return {
            "kind": "quantile_clipper",
            "lower": self.lower,
            "upper": self.upper,
            "lower_bounds": floats(self.lower_),
            "upper_bounds": floats(self.upper_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileClipper:
        self = cls(d["lower"], d["upper"])
        self.lower_ = np.asarray(d["lower_bounds"], dtype=np.float64)
        self.upper_ = np.asarray(d["upper_bounds"], dtype=np.float64)
        return self


def log1p(X: Any, backend: str | None = None) -> Any:
    """``log(1 + X)`` elementwise, as float64 (1-d input gives one column).

    NaN -> NaN, -1 -> -inf, below -1 -> NaN, +inf -> +inf; no warnings, on every backend.
    """
    return _apply("log1p", backend, as_2d_float(X, "X"))
