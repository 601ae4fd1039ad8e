"""Histograms on given bin edges and quantiles."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select
from kernels.stats._inputs import as_float_1d


def histogram(x: Any, edges: Any, *, backend: str | None = None) -> np.ndarray:
    """Counts of x in the bins [e0, e1), [e1, e2), ..., [e_k-1, e_k] (NumPy's rule).

    NaN and values outside [e0, e_k] are not counted; edges may be ±inf. Returns int64
    counts on the host. Edges must be at least two, increasing and not NaN.
    """
    x = as_float_1d(x, "x", "histogram")
    edges = as_float_1d(edges, "edges", "histogram")
    if edges.size < 2:
        raise ValueError("histogram: edges needs at least two values (one bin)")
    if bool(np.isnan(edges).any()) or not bool((edges[1:] >= edges[:-1]).all()):
        raise ValueError("histogram: edges must be increasing and not NaN")
    return select("stats", x, backend=backend).histogram(x, edges)


def quantiles(x: Any, q: Any, *, backend: str | None = None) -> np.ndarray:
    """Quantiles q (in [0, 1]) of the finite values of x, interpolated linearly.

    Matches ``np.quantile(x[np.isfinite(x)], q)``. NaN and ±inf are ignored; with no
    finite value left this is a ValueError. Returns a float64 host array shaped like q.
    """
    x = as_float_1d(x, "x", "quantiles")
    qa = np.asarray(q, dtype=np.float64)
    flat = np.ascontiguousarray(qa.ravel())
    if not bool(((flat >= 0) & (flat <= 1)).all()):
        raise ValueError("quantiles: q must lie in [0, 1]")
    if not bool(np.isfinite(x).any()):
        raise ValueError("quantiles: x has no finite values")
    return select("stats", x, backend=backend).quantiles(x, flat).reshape(qa.shape)
