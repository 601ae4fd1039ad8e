"""Missing-value imputation with an optional missing indicator.

NaN policy: NaN is the missing value (±inf is a value). ``fit`` learns one fill value per
column from the non-NaN values; ``transform`` replaces NaN with it and, with
``add_indicator=True``, appends one 0/1 column per feature that had NaN during ``fit``
(scikit-learn's ``SimpleImputer(add_indicator=True)`` layout).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select
from kernels.summary import ColumnSummary
from kernels.transforms._fit import Transformer, check_summary, fit_quantiles, floats
from kernels.transforms._inputs import as_2d_float, check_columns, check_fitted, host_or_device

STRATEGIES = ("mean", "median", "constant")


class SimpleImputer(Transformer):
    """Fill NaN with the column mean, median, or a constant.

    ``mean`` and ``constant`` fits are mergeable (``from_summary``); ``median`` needs the
    whole column. A column with no observed value is a ValueError for mean and median
    (use ``strategy="constant"``), and ±inf in ``fit`` is one for mean and median.
    """

    def __init__(
        self,
        strategy: str = "mean",
        fill_value: float = 0.0,
        add_indicator: bool = False,
        backend: str | None = None,
    ) -> None:
        self.strategy = strategy
        self.fill_value = fill_value
        self.add_indicator = add_indicator
        self.backend = backend

    def _check_params(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"SimpleImputer: strategy={self.strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        if self.strategy == "constant" and np.isnan(float(self.fill_value)):
            raise ValueError("SimpleImputer: fill_value must not be NaN")

    def fit(self, X: Any) -> SimpleImputer:
        self._check_params()
        summary = ColumnSummary.from_array(X, backend=self.backend)
        self._fit_summary(summary)
        if self.strategy == "median":
            self.statistics_ = fit_quantiles(X, [0.5], "SimpleImputer.fit", self.backend)[0]
        return self

    @classmethod
    def from_summary(
        cls,
        summary: ColumnSummary,
        strategy: str = "mean",
        fill_value: float = 0.0,
        add_indicator: bool = False,
        backend: str | None = None,
    ) -> SimpleImputer:
        if strategy == "median":
            raise ValueError("SimpleImputer.from_summary: medians do not merge; fit on X")
        self = cls(strategy, fill_value, add_indicator, backend)
        self._check_params()
        return self._fit_summary(summary)

    def _fit_summary(self, summary: ColumnSummary) -> SimpleImputer:
        who = "SimpleImputer.fit"
        if self.strategy == "constant":
            if summary.n_rows == 0:
                raise ValueError(f"{who}: X has no rows; fit needs at least one row")
            self.statistics_ = np.full(summary.n_columns, float(self.fill_value))
        else:
            check_summary(summary, who)
            self.statistics_ = summary.mean
        self.missing_features_ = np.flatnonzero(summary.nan_count > 0).astype(np.int64)
        return self

    @property
    def indicator_features_(self) -> np.ndarray:
        check_fitted(self, "statistics_")
        if not self.add_indicator:
            return np.zeros(0, dtype=np.int64)
        return self.missing_features_

    def transform(self, X: Any) -> Any:
        check_fitted(self, "statistics_")
        X = as_2d_float(X, "X")
        check_columns(X, len(self.statistics_), "SimpleImputer.transform")
        module = select("transforms", X, backend=self.backend, numpy_when_small=True)
        return module.impute(host_or_device(module, X), self.statistics_, self.indicator_features_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "statistics_")
        return {
            "kind": "simple_imputer",
            "strategy": self.strategy,
            "fill_value": float(self.fill_value),
            "add_indicator": bool(self.add_indicator),
            "statistics": floats(self.statistics_),
            "missing_features": self.missing_features_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimpleImputer:
        self = cls(d["strategy"], d["fill_value"], d["add_indicator"])
        self.statistics_ = np.asarray(d["statistics"], dtype=np.float64)
        self.missing_features_ = np.asarray(d["missing_features"], dtype=np.int64)
        return self
