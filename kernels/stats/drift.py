"""Data drift of production columns against a stored reference summary.

Four measures per column, defined as Evidently defines them:

- **PSI** ``sum((cur - ref) * ln(cur / ref))`` over bins, where a zero proportion on
  either side is replaced first (Evidently's ``get_binned_data(feel_zeroes=True)`` rule:
  ``min_nonzero / 1e6`` if the smallest non-zero proportion is <= 1e-4, else ``1e-4``).
- **KS**: ``scipy.stats.ks_2samp`` statistic and p-value (see ``kstest.py``).
- **Wasserstein**: ``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref), 0.001)``
  with the population standard deviation: Evidently's normed Wasserstein.
- **Jensen-Shannon** distance, natural log, on the binned proportions without zero
  replacement (``scipy.spatial.distance.jensenshannon(ref, cur)``).

Binning follows Evidently's rule with one deliberate difference. A column whose finite
reference values take at most 20 distinct values is categorical: one bin per value, and
current values never seen in the reference get a bin each with reference proportion 0.
Otherwise Evidently takes Sturges equal-width bins over reference *and* current together;
a stored summary cannot see the current data, so we take Sturges equal-width bins over
the reference range and let the two outer bins extend to ±inf, so current values
outside that range land in the end bins instead of being dropped.

NaN and ±inf are left out of every measure, as Evidently drops them. A column with no
finite current value gets NaN measures.

KS and Wasserstein use the reference's distribution stored as sorted distinct values
with their cumulative fractions: exact when the reference has at most ``max_points``
distinct values, else a quantile sketch of ``max_points`` points (cumulative fractions
still exact at those points; KS is then exact up to 1/max_points and Wasserstein treats
the reference as constant between sketch points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels._backend import array_module, select, to_host
from kernels.stats.kstest import ks_pvalue

MAX_CATEGORIES = 20  # Evidently: numeric columns with more distinct values are binned
MAX_POINTS = 10_000


@dataclass
class ColumnSummary:
    name: str
    kind: str  # "numeric" (binned) or "categorical" (one bin per value)
    n: int  # finite reference values
    std: float  # population standard deviation of the finite reference values
    cuts: np.ndarray  # inner bin edges (numeric); empty for categorical
    proportions: np.ndarray  # reference share per bin, or per category (= points)
    points: np.ndarray  # sorted distinct reference values, or a quantile sketch
    cdf: np.ndarray  # fraction of the reference <= each point
    exact: bool  # points hold every distinct reference value

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "n": self.n,
            "std": self.std,
            "cuts": self.cuts.tolist(),
            "proportions": self.proportions.tolist(),
            "points": self.points.tolist(),
            "cdf": self.cdf.tolist(),
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSummary:
        arr = {
            k: np.asarray(d[k], dtype=np.float64) for k in ("cuts", "proportions", "points", "cdf")
        }
        return cls(
            d["name"], d["kind"], int(d["n"]), float(d["std"]), exact=bool(d["exact"]), **arr
        )


@dataclass
class ReferenceSummary:
    """What drift needs from the reference data, small enough to store with a model."""

    columns: list[ColumnSummary] = field(default_factory=list)

    @classmethod
    def fit(
        cls, X: Any, names: list[str] | None = None, max_points: int = MAX_POINTS
    ) -> ReferenceSummary:
        """Summarise the columns of a (n, d) array (or one 1-d column) on the host."""
        X = _as_matrix(np.asarray(to_host(X)), "ReferenceSummary.fit").T
        if names is None:
            names = [f"x{i}" for i in range(X.shape[0])]
        if len(names) != X.shape[0]:
            raise ValueError(f"ReferenceSummary.fit: {len(names)} names for {X.shape[0]} columns")
        if max_points < 2:
            raise ValueError("ReferenceSummary.fit: max_points must be at least 2")
        return cls([_summarise(name, row, max_points) for name, row in zip(names, X, strict=True)])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "reference_summary", "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceSummary:
        return cls([ColumnSummary.from_dict(c) for c in d["columns"]])


def _summarise(name: str, x: np.ndarray, max_points: int) -> ColumnSummary:
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        raise ValueError(f"ReferenceSummary.fit: column {name!r} has no finite values")
    values, counts = np.unique(x, return_counts=True)
    n = x.size
    with np.errstate(over="ignore"):  # values near 1e308: std is inf, W1 normalises to 0
        std = float(np.std(x))
    if values.size <= max_points:
        points, cdf, exact = values, np.cumsum(counts) / n, True
    else:
        points = np.unique(np.quantile(x, (np.arange(max_points) + 0.5) / max_points))
        cdf, exact = np.searchsorted(x, points, side="right") / n, False
    if values.size <= MAX_CATEGORIES:
        kind, cuts, props = "categorical", np.empty(0), counts / n
    else:
        kind = "numeric"
        edges = np.histogram_bin_edges(x, bins="sturges")
        props = np.histogram(x, edges)[0] / n
        cuts = edges[1:-1]
    return ColumnSummary(name, kind, n, std, cuts, props, points, cdf, exact)


def _as_matrix(X: Any, where: str):
    """(n, d) float64 in its own array module; a 1-d array is one column."""
    xp = array_module(X)
    try:
        X = xp.asarray(X, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: data must be numeric; encode categories first ({exc})"
        ) from None
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"{where}: data must be 1-d or 2-d, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{where}: data has no rows")
    return X


def drift(summary: ReferenceSummary, current: Any, *, backend: str | None = None) -> dict[str, Any]:
    """Compare current data, shaped (n, d) like the reference, with its summary.

    Returns ``{"columns": names, "psi", "ks_statistic", "ks_pvalue", "wasserstein",
    "jensenshannon"}``, each measure a float64 host array with one value per column.
    """
    cur = _as_matrix(current, "drift")
    d = cur.shape[1]
    if d != len(summary.columns):
        raise ValueError(f"drift: current data has {d} columns, the summary {len(summary.columns)}")
    impl = select("stats", cur, backend=backend)
    cols = summary.columns
    cuts, cut_off = _pack([c.cuts for c in cols])
    points, point_off = _pack([c.points for c in cols])
    cdf, _ = _pack([c.cdf for c in cols])
    counts, eq, ks, w1, nfin = impl.drift_scan(cur, cuts, cut_off, points, cdf, point_off)

    out = {
        k: np.full(d, np.nan)
        for k in ("psi", "ks_statistic", "ks_pvalue", "wasserstein", "jensenshannon")
    }
    for c, col in enumerate(cols):
        n = int(nfin[c])
        if n == 0:
            continue
        if col.kind == "numeric":
            cur_counts = counts[cut_off[c] + c : cut_off[c + 1] + c + 1].astype(np.float64)
            ref_p = col.proportions
        else:
            cur_counts = eq[point_off[c] : point_off[c + 1]].astype(np.float64)
            ref_p = col.proportions
            if cur_counts.sum() < n:  # values the reference never had: a bin each
                x = np.asarray(to_host(cur[:, c]))
                x = x[np.isfinite(x)]
                _, extra = np.unique(x[~np.isin(x, col.points)], return_counts=True)
                cur_counts = np.concatenate((cur_counts, extra))
                ref_p = np.concatenate((ref_p, np.zeros(extra.size)))
        cur_p = cur_counts / n
        out["psi"][c] = psi(ref_p, cur_p)
        out["jensenshannon"][c] = jensenshannon(ref_p, cur_p)
        out["ks_statistic"][c] = ks[c]
        out["ks_pvalue"][c] = ks_pvalue(float(ks[c]), col.n, n)
        out["wasserstein"][c] = w1[c] / max(col.std, 0.001)
    out["columns"] = [c.name for c in cols]
    return out


def _pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    off = np.zeros(len(arrays) + 1, dtype=np.int64)
    off[1:] = np.cumsum([a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.empty(0)
    return np.ascontiguousarray(flat, dtype=np.float64), off


def fill_zeroes(p: np.ndarray) -> np.ndarray:
    """Evidently's replacement of zero proportions before PSI (see the module docstring)."""
    p = np.array(p, dtype=np.float64)
    nonzero = p[p != 0]
    if nonzero.size == 0:
        return p
    smallest = nonzero.min()
    p[p == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return p


def psi(ref_p: Any, cur_p: Any) -> float:
    """Population stability index of two binned distributions (proportions per bin)."""
    r = fill_zeroes(ref_p)
    c = fill_zeroes(cur_p)
    return float(np.sum((c - r) * np.log(c / r)))


def jensenshannon(ref_p: Any, cur_p: Any) -> float:
    """scipy.spatial.distance.jensenshannon(ref_p, cur_p) with the natural log."""
    p = np.asarray(ref_p, dtype=np.float64)
    q = np.asarray(cur_p, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    total = _rel_entr(p, m) + _rel_entr(q, m)
    return math.sqrt(max(total, 0.0) / 2.0)


def _rel_entr(a: np.ndarray, b: np.ndarray) -> float:
    pos = a > 0
    return float(np.sum(a[pos] * np.log(a[pos] / b[pos])))
