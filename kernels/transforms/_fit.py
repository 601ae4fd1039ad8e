"""What every transform shares at fit time: ``fit_transform`` and the fit statistics' checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select, to_host
from kernels.summary import ColumnSummary
from kernels.transforms._inputs import as_2d_float, host_or_device


class Transformer:
    """``fit_transform`` for estimators whose ``fit`` and ``transform`` take the same data,
    as scikit-learn's ``TransformerMixin`` gives it."""

    def fit_transform(self, X: Any) -> Any:
        return self.fit(X).transform(X)  # type: ignore[attr-defined]


def check_summary(summary: ColumnSummary, who: str, *, allow_empty_columns: bool = False) -> None:
    """Reject what no fitted state can come from: no rows, ±inf, all-NaN columns."""
    if summary.n_columns == 0 or summary.n_rows == 0:
        raise ValueError(f"{who}: X has no rows (or no columns); fit needs at least one value")
    bad = np.flatnonzero(np.isinf(summary.min) | np.isinf(summary.max))
    if len(bad):
        raise ValueError(
            f"{who}: X contains infinity in column {int(bad[0])}; "
            "clip or drop infinite values before fitting"
        )
    empty = np.flatnonzero(summary.count == 0)
    if len(empty) and not allow_empty_columns:
        raise ValueError(
            f"{who}: column {int(empty[0])} has no observed (non-NaN) values to fit on"
        )


def fit_summary(X: Any, who: str, backend: str | None) -> ColumnSummary:
    summary = ColumnSummary.from_array(X, backend=backend)
    check_summary(summary, who)
    return summary


def fit_quantiles(X: Any, qs: list[float], who: str, backend: str | None) -> np.ndarray:
    """Quantiles (len(qs), d) of each column's non-NaN values, after the shared checks."""
    X = as_2d_float(X, "X")
    module = select("transforms", X, backend=backend, numpy_when_small=True)
    X = host_or_device(module, X)
    # The summary pass also catches inf / empty columns before the (costlier) sort.
    check_summary(ColumnSummary.from_array(X, backend=module.__name__.rsplit(".", 1)[1]), who)
    return np.asarray(to_host(module.quantiles(X, np.asarray(qs, dtype=np.float64))))


def floats(values: Any) -> list[Any]:
    """A float array as a JSON-able list."""
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
