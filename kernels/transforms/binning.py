"""Quantile bucketing: each value becomes the index of its fitted quantile bin.

NaN policy: NaN is missing; ``fit`` ignores it, ``transform`` gives bucket -1. ±inf in
``fit`` is a ValueError; in ``transform`` it falls in the first or last bucket.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select
from kernels.transforms._fit import Transformer, fit_quantiles, floats
from kernels.transforms._inputs import as_2d_float, check_columns, check_fitted, host_or_device


class QuantileBucketizer(Transformer):
    """Bucket each column at its fitted quantiles into (at most) ``n_bins`` int64 buckets.

    Bucket ``b`` holds values ``edges[b-1] <= x < edges[b]`` over the column's inner edges
    (the quantiles at 1/n_bins, ..., (n_bins-1)/n_bins). Repeated edges (heavy ties) are
    merged, so such a column gets fewer buckets; ``n_bins_`` says how many.
    """

    def __init__(self, n_bins: int = 10, backend: str | None = None) -> None:
        self.n_bins = n_bins
        self.backend = backend

    def fit(self, X: Any) -> QuantileBucketizer:
        if not isinstance(self.n_bins, int | np.integer) or self.n_bins < 1:
            raise ValueError(f"QuantileBucketizer: n_bins must be an int >= 1, got {self.n_bins!r}")
        qs = np.arange(1, self.n_bins) / self.n_bins
        inner = fit_quantiles(X, list(qs), "QuantileBucketizer.fit", self.backend)
        self.edges_ = [np.unique(inner[:, j]) for j in range(inner.shape[1])]
        return self

    @property
    def n_bins_(self) -> np.ndarray:
        check_fitted(self, "edges_")
        return np.array([len(e) + 1 for e in self.edges_], dtype=np.int64)

    def transform(self, X: Any) -> Any:
        check_fitted(self, "edges_")
        X = as_2d_float(X, "X")
        check_columns(X, len(self.edges_), "QuantileBucketizer.transform")
        width = max([len(e) for e in self.edges_] + [1])
        edges = np.full((len(self.edges_), width), np.inf)
        for j, e in enumerate(self.edges_):
            edges[j, : len(e)] = e
        n_edges = np.array([len(e) for e in self.edges_], dtype=np.int64)
        module = select("transforms", X, backend=self.backend, numpy_when_small=True)
        return module.bucketize(host_or_device(module, X), edges, n_edges)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "edges_")
        return {
            "kind": "quantile_bucketizer",
            "n_bins": int(self.n_bins),
            "edges": [floats(e) for e in self.edges_],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileBucketizer:
        self = cls(n_bins=int(d["n_bins"]))
        self.edges_ = [np.asarray(e, dtype=np.float64) for e in d["edges"]]
        return self
