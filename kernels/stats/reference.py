"""Plain NumPy statistics kernels: the oracle the Numba and CUDA versions are tested against.

``cpu.py`` and ``cuda.py`` expose the same functions with the same signatures. Inputs
arrive already validated and converted by the public modules (``histogram.py``,
``drift.py``, ``metrics.py``, ``fairness.py``): float64 values, int64 codes, uint8
labels. Each function returns host NumPy arrays or Python floats.
"""

from __future__ import annotations

import numpy as np


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in [e_i, e_i+1), the last bin closed; NaN and out-of-range values dropped."""
    nb = edges.size - 1
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = nb - 1
    ok = (idx >= 0) & (idx < nb) & ~np.isnan(x)
    return np.bincount(idx[ok], minlength=nb).astype(np.int64)


def quantiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (NumPy's default) of the finite values of x."""
    return np.quantile(x[np.isfinite(x)], q)


def drift_scan(
    cur: np.ndarray,
    cuts: np.ndarray,
    cut_off: np.ndarray,
    points: np.ndarray,
    cdf: np.ndarray,
    point_off: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compare each current column with a stored reference distribution.

    ``cur`` is (n, d); NaN and +-inf are left out. Column c's bin cut points are
    ``cuts[cut_off[c]:cut_off[c+1]]`` (bins are (-inf, cut_0), [cut_0, cut_1), ...,
    [cut_last, inf)); its reference distribution is the step function with value
    ``cdf[k]`` (fraction of reference <= point) from each ``points[k]`` on, k in
    ``point_off[c]:point_off[c+1]``.

    Returns (bin counts, flat like cut_off + column index), (counts of current values
    equal to each point), KS statistic per column, unnormalised Wasserstein-1 per column,
    finite current values per column. KS and W1 follow scipy's ks_2samp /
    wasserstein_distance: both CDFs are evaluated right-continuously at every value of
    either sample. This version sorts each column and walks both samples together.
    """
    s = sorted_columns(cur)
    d = s.shape[0]
    # finite values of each sorted row: after the -infs, before +infs and NaNs
    lo = np.array([np.searchsorted(s[c], -np.inf, side="right") for c in range(d)], dtype=int)
    hi = np.array([np.searchsorted(s[c], np.inf, side="left") for c in range(d)], dtype=int)
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    for c in range(d):
        x = s[c, lo[c] : hi[c]]
        n = x.size
        cu = cuts[cut_off[c] : cut_off[c + 1]]
        u = points[point_off[c] : point_off[c + 1]]
        f = cdf[point_off[c] : point_off[c + 1]]
        below = np.concatenate(([0], np.searchsorted(x, cu, side="left"), [n]))
        counts[cut_off[c] + c : cut_off[c + 1] + c + 1] = np.diff(below)
        eq[point_off[c] : point_off[c + 1]] = np.searchsorted(x, u, "right") - np.searchsorted(
            x, u, "left"
        )
        if n == 0 or u.size == 0:
            continue
        z = np.sort(np.concatenate((x, u)))
        f_cur = np.searchsorted(x, z, side="right") / n
        k = np.searchsorted(u, z, side="right") - 1
        f_ref = np.where(k >= 0, f[np.maximum(k, 0)], 0.0)
        gap = np.abs(f_ref - f_cur)
        ks[c] = gap.max()
        w1[c] = float(np.sum(gap[:-1] * np.diff(z)))
    return counts, eq, ks, w1, (hi - lo).astype(np.int64)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney U / (P N): mean rank of positives, ties at their average rank."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y.astype(bool)].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def group_counts(
    y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    """(n_groups, 4) int64: rows, predicted positive, actual positive, true positive."""
    out = np.zeros((n_groups, 4), dtype=np.int64)
    yt = y_true.astype(bool)
    yp = y_pred.astype(bool)
    out[:, 0] = np.bincount(group, minlength=n_groups)
    out[:, 1] = np.bincount(group[yp], minlength=n_groups)
    out[:, 2] = np.bincount(group[yt], minlength=n_groups)
    out[:, 3] = np.bincount(group[yt & yp], minlength=n_groups)
    return out


def sorted_columns(X: np.ndarray) -> np.ndarray:
    """(d, n): each column of a (n, d) array as a sorted row (NaN last)."""
    return np.sort(X.T, axis=1)
