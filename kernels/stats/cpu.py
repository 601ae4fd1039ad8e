"""Numba CPU statistics kernels; same signatures and results as ``reference.py``.

Parallel loops split rows into one block per thread with private accumulators, so there
are no atomics and no false sharing; sorting stays in NumPy (faster than Numba's sort,
and it releases the GIL so columns sort on threads).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

_OPTS = {"cache": True, "nogil": True}
# Thread counts are passed in: calling nb.get_num_threads() inside a kernel stops caching.


@nb.njit(parallel=True, **_OPTS)
def _histogram(x, edges, nt):
    nbins = edges.size - 1
    local = np.zeros((nt, nbins), dtype=np.int64)
    step = (x.size + nt - 1) // nt
    first, last = edges[0], edges[-1]
    for t in nb.prange(nt):
        for i in range(t * step, min(x.size, (t + 1) * step)):
            v = x[i]
            if not (v >= first and v <= last):  # also drops NaN
                continue
            if v == last:
                local[t, nbins - 1] += 1
                continue
            lo, hi = 0, nbins  # invariant: edges[lo] <= v < edges[hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if edges[mid] <= v:
                    lo = mid
                else:
                    hi = mid
            local[t, lo] += 1
    return local.sum(axis=0)


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return _histogram(x, edges, nb.get_num_threads())


@nb.njit(**_OPTS)
def _interp_sorted(s, q):
    out = np.empty(q.size)
    n = s.size
    for j in range(q.size):
        pos = q[j] * (n - 1)
        i = min(int(np.floor(pos)), n - 1)
        frac = pos - i
        if i + 1 < n:
            # NumPy's lerp form, so results agree to the last bit
            diff = s[i + 1] - s[i]
            out[j] = s[i] + diff * frac if frac < 0.5 else s[i + 1] - diff * (1.0 - frac)
        else:
            out[j] = s[i]
    return out


def quantiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return _interp_sorted(np.sort(x[np.isfinite(x)]), q)


@nb.njit(parallel=True, **_OPTS)
def _drift_scan(cur, lo, hi, cuts, cut_off, points, cdf, point_off):
    d = cur.shape[0]
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    for c in nb.prange(d):
        x = cur[c, lo[c] : hi[c]]
        n = x.size
        # bins: a binary search per cut point in the sorted column, not a pass over it
        c0, c1 = cut_off[c], cut_off[c + 1]
        below = 0
        for j in range(c1 - c0):
            left = np.searchsorted(x, cuts[c0 + j], side="left")
            counts[c0 + c + j] = left - below
            below = left
        counts[c1 + c] = n - below
        p0, p1 = point_off[c], point_off[c + 1]
        m = p1 - p0
        if n == 0:
            continue
        # merge walk over the union of both samples, in increasing order
        i = 0
        k = 0
        f_ref = 0.0
        dmax = 0.0
        area = 0.0
        while i < n or k < m:
            z = x[i] if k >= m or i < n and x[i] < points[p0 + k] else points[p0 + k]
            i0 = i
            while i < n and x[i] == z:
                i += 1
            if k < m and points[p0 + k] == z:
                eq[p0 + k] = i - i0
                f_ref = cdf[p0 + k]
                k += 1
            gap = abs(f_ref - i / n)
            dmax = max(dmax, gap)
            if i < n or k < m:
                nxt = x[i] if (k >= m or (i < n and x[i] < points[p0 + k])) else points[p0 + k]
                area += gap * (nxt - z)
        if m > 0:
            ks[c] = dmax
            w1[c] = area
    return counts, eq, ks, w1


def drift_scan(cur, lo, hi, cuts, cut_off, points, cdf, point_off):
    return _drift_scan(cur, lo, hi, cuts, cut_off, points, cdf, point_off)


@nb.njit(parallel=True, **_OPTS)
def _transpose(X, out, nt):
    # blocks of rows: reads stay contiguous and each thread writes short runs per column
    n, d = X.shape
    nblocks = (n + 511) // 512
    for b in nb.prange(nblocks):
        for c in range(d):
            for i in range(b * 512, min(n, (b + 1) * 512)):
                out[c, i] = X[i, c]


def sorted_columns(X: np.ndarray) -> np.ndarray:
    """(d, n): each column of a (n, d) array as a sorted row (NaN last).

    A blocked transpose, then NumPy's sort in place on threads (it releases the GIL).
    """
    out = np.empty((X.shape[1], X.shape[0]))
    if X.flags.f_contiguous:
        out[...] = X.T
    else:
        _transpose(X, out, nb.get_num_threads())
    with ThreadPoolExecutor(max(1, min(nb.get_num_threads(), out.shape[0]))) as ex:
        list(ex.map(lambda row: row.sort(), out))
    return out


@nb.njit(parallel=True, **_OPTS)
def _rank_sum_sorted(ss, ys, nt):
    # positives' average ranks: walk tie groups; groups split between threads are
    # found from any element by scanning to the group's ends (rare, cheap).
    n = ss.size
    part = np.zeros(nt)
    step = (n + nt - 1) // nt
    for t in nb.prange(nt):
        i = t * step
        end = min(n, (t + 1) * step)
        if i > 0 and i < end and ss[i] == ss[i - 1]:
            v = ss[i]
            while i < end and ss[i] == v:  # the group belongs to the previous block
                i += 1
        acc = 0.0
        while i < end:
            j = i
            pos = 0
            while j < n and ss[j] == ss[i]:
                pos += ys[j]
                j += 1
            acc += pos * (i + j + 1) / 2.0
            i = j
        part[t] = acc
    return part.sum()


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    order = np.argsort(s)
    rank_sum = _rank_sum_sorted(s[order], y[order], nb.get_num_threads())
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@nb.njit(parallel=True, **_OPTS)
def _group_counts(y_true, y_pred, group, n_groups, nt):
    n = group.size
    local = np.zeros((nt, n_groups, 4), dtype=np.int64)
    step = (n + nt - 1) // nt
    for t in nb.prange(nt):
        for i in range(t * step, min(n, (t + 1) * step)):
            g = group[i]
            yt = y_true[i]
            yp = y_pred[i]
            local[t, g, 0] += 1
            local[t, g, 1] += yp
            local[t, g, 2] += yt
            local[t, g, 3] += yt & yp
    return local.sum(axis=0)


def group_counts(
    y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    return _group_counts(y_true, y_pred, group, n_groups, nb.get_num_threads())
