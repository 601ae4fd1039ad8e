"""Numba CPU statistics kernels; same signatures and results as ``reference.py``.

Parallel loops split rows into one block per thread with private accumulators, so there
are no atomics and no false sharing; sorting stays in NumPy (faster than Numba's sort,
and it releases the GIL so columns sort on threads).

Small inputs take a serial path: waking the thread pool for a ``parallel=True`` kernel
costs tens of microseconds on an idle machine and milliseconds when its cores are busy
(the launch waits for every worker to be scheduled), more than the work itself below
``SERIAL_BELOW`` elements. Each parallel kernel has a serial twin built from the same
per-block function and called with the same thread count, so the blocks and the order of
every sum are the same on both paths.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np

from kernels import _scalar

_OPTS = {"cache": True, "nogil": True}
# Thread counts are passed in: calling nb.get_num_threads() inside a kernel stops caching.

SERIAL_BELOW = 65_536  # elements: below this a parallel launch cost more than it saved


def _serial(size: int) -> bool:
    return size < SERIAL_BELOW


# -- histogram ---------------------------------------------------------------------------------


@nb.njit(**_OPTS)
def _histogram_block(x, edges, even, start, stop, out):
    nbins = edges.size - 1
    first, last = edges[0], edges[-1]
    norm = nbins / (last - first) if even else 0.0
    for i in range(start, stop):
        v = x[i]
        if not (v >= first and v <= last):  # also drops NaN
            continue
        if v == last:
            out[nbins - 1] += 1
            continue
        if even:
            # NumPy's uniform-bins rule: compute the bin, then correct it against the
            # edges themselves, so values on an edge land where the binary search puts them
            b = min(int((v - first) * norm), nbins - 1)
            while b > 0 and v < edges[b]:
                b -= 1
            while b < nbins - 1 and v >= edges[b + 1]:
                b += 1
            out[b] += 1
            continue
        lo, hi = 0, nbins  # invariant: edges[lo] <= v < edges[hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if edges[mid] <= v:
                lo = mid
            else:
                hi = mid
        out[lo] += 1


@nb.njit(parallel=True, **_OPTS)
def _histogram_par(x, edges, even, nt):
    local = np.zeros((nt, edges.size - 1), dtype=np.int64)
    step = (x.size + nt - 1) // nt
    for t in nb.prange(nt):
        _histogram_block(x, edges, even, t * step, min(x.size, (t + 1) * step), local[t])
    return local.sum(axis=0)


@nb.njit(**_OPTS)
def _histogram_ser(x, edges, even):
    out = np.zeros(edges.size - 1, dtype=np.int64)
    _histogram_block(x, edges, even, 0, x.size, out)
    return out


def evenly_spaced(edges: np.ndarray) -> bool:
    """Edges close enough to equal widths that the computed bin is off by at most one.

    The kernel corrects the computed bin against the real edges, so this only decides
    speed, never the result.
    """
    nbins = edges.size - 1
    width = edges[-1] - edges[0]
    if nbins < 1 or not np.isfinite(width) or width <= 0:
        return False
    ideal = edges[0] + np.arange(nbins + 1) * (width / nbins)
    return bool(np.max(np.abs(edges - ideal)) <= 1e-3 * (width / nbins))


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    even = evenly_spaced(edges)
    if _serial(x.size):
        return _histogram_ser(x, edges, even)
    return _histogram_par(x, edges, even, nb.get_num_threads())


# -- quantiles ---------------------------------------------------------------------------------


interpolate = nb.njit(**_OPTS)(_scalar.interpolate)


@nb.njit(**_OPTS)
def _interp_sorted(s, q):
    out = np.empty(q.size)
    for j in range(q.size):
        out[j] = interpolate(s, s.size, q[j])
    return out


def quantiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return _interp_sorted(np.sort(x[np.isfinite(x)]), q)


# -- drift -------------------------------------------------------------------------------------


@nb.njit(fastmath={"reassoc", "nsz"}, **_OPTS)
def _area(x, start, stop, f, n):
    # sum of |f - F_cur| over the steps between consecutive current values x[start:stop]
    # (F_cur = (j+1)/n just right of x[j]); reassociation lets the loop vectorise
    s = 0.0
    for j in range(start, stop - 1):
        s += abs(f - (j + 1) / n) * (x[j + 1] - x[j])
    return s


@nb.njit(**_OPTS)
def _search_from(x, start, v):
    """First index i >= start with x[i] >= v (x sorted, x[start-1] < v): a galloping
    search, cheap when the answer is near start, as it is for successive sorted points."""
    n = x.size
    step = 1
    lo = start
    hi = start
    while hi < n and x[hi] < v:
        lo = hi + 1
        hi = hi + step
        step *= 2
    hi = min(hi, n)
    while lo < hi:
        mid = (lo + hi) // 2
        if x[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(**_OPTS)
def _drift_column(x, cuts, points, cdf, counts, eq):
    """Bin counts, point counts, KS and W1 of one sorted finite column (see reference.py).

    Between two reference points u_k <= z < u_k+1 the reference CDF is the constant
    cdf[k], and the current CDF only rises, so KS over that stretch is attained at u_k or
    at the last current value before u_k+1: the ranks of the points in the sorted column
    (a galloping search from the previous point's rank) give it exactly. Wasserstein-1 integrates |cdf[k] - F_cur| over the same stretch, a tight loop over the
    current values inside it. Nothing walks both samples together.
    """
    n = x.size
    below = 0
    for j in range(cuts.size):
        left = np.searchsorted(x, cuts[j], side="left")
        counts[j] = left - below
        below = left
    counts[cuts.size] = n - below
    m = points.size
    left = np.empty(m, dtype=np.int64)  # current values < each point
    right = np.empty(m, dtype=np.int64)  # current values <= each point
    pos = 0
    for k in range(m):
        pos = _search_from(x, pos, points[k])
        left[k] = pos
        while pos < n and x[pos] == points[k]:
            pos += 1
        right[k] = pos
        eq[k] = right[k] - left[k]
    if n == 0 or m == 0:
        return 0.0, 0.0
    # below the first point the reference CDF is 0
    q = left[0]
    dmax = q / n
    area = _area(x, 0, q, 0.0, n)
    if q > 0:
        area += (q / n) * (points[0] - x[q - 1])
    for k in range(m):
        f = cdf[k]
        p = right[k]
        last = k + 1 == m
        q = n if last else left[k + 1]
        dmax = max(dmax, abs(f - p / n), abs(f - q / n))
        # from u_k to the first current value above it (or to the next point)
        if p < q:
            area += abs(f - p / n) * (x[p] - points[k])
        elif not last:
            area += abs(f - p / n) * (points[k + 1] - points[k])
        area += _area(x, p, q, f, n)
        if q > p and not last:
            area += abs(f - q / n) * (points[k + 1] - x[q - 1])
    return dmax, area


@nb.njit(**_OPTS)
def _drift_one(cur, c, lo, hi, cuts, cut_off, points, cdf, point_off, counts, eq, ks, w1):
    c0, c1 = cut_off[c], cut_off[c + 1]
    p0, p1 = point_off[c], point_off[c + 1]
    ks[c], w1[c] = _drift_column(
        cur[c, lo[c] : hi[c]],
        cuts[c0:c1],
        points[p0:p1],
        cdf[p0:p1],
        counts[c0 + c : c1 + c + 1],
        eq[p0:p1],
    )


@nb.njit(parallel=True, **_OPTS)
def _drift_par(cur, lo, hi, cuts, cut_off, points, cdf, point_off):
    d = cur.shape[0]
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    for c in nb.prange(d):
        _drift_one(cur, c, lo, hi, cuts, cut_off, points, cdf, point_off, counts, eq, ks, w1)
    return counts, eq, ks, w1


@nb.njit(**_OPTS)
def _drift_ser(cur, lo, hi, cuts, cut_off, points, cdf, point_off):
    d = cur.shape[0]
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    for c in range(d):
        _drift_one(cur, c, lo, hi, cuts, cut_off, points, cdf, point_off, counts, eq, ks, w1)
    return counts, eq, ks, w1


def drift_scan(cur, lo, hi, cuts, cut_off, points, cdf, point_off):
    kernel = _drift_ser if _serial(cur.size) or cur.shape[0] < 2 else _drift_par
    return kernel(cur, lo, hi, cuts, cut_off, points, cdf, point_off)


@nb.njit(parallel=True, **_OPTS)
def _transpose(X, out):
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
    if _serial(X.size) or X.shape[1] < 2:
        return np.sort(X.T, axis=1)
    out = np.empty((X.shape[1], X.shape[0]))
    if X.flags.f_contiguous:
        out[...] = X.T
    else:
        _transpose(X, out)
    with ThreadPoolExecutor(max(1, min(nb.get_num_threads(), out.shape[0]))) as ex:
        list(ex.map(lambda row: row.sort(), out))
    return out


# -- ROC AUC -----------------------------------------------------------------------------------


@nb.njit(**_OPTS)
def _rank_block(ss, ys, start, end):
    # positives' average ranks over the tie groups that start in [start, end); a group
    # split between blocks belongs to the block where it starts
    n = ss.size
    i = start
    if i > 0 and i < end and ss[i] == ss[i - 1]:
        v = ss[i]
        while i < end and ss[i] == v:
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
    return acc


@nb.njit(parallel=True, **_OPTS)
def _rank_sum_par(ss, ys, nt):
    n = ss.size
    part = np.zeros(nt)
    step = (n + nt - 1) // nt
    for t in nb.prange(nt):
        part[t] = _rank_block(ss, ys, t * step, min(n, (t + 1) * step))
    return part.sum()


@nb.njit(**_OPTS)
def _rank_sum_ser(ss, ys, nt):
    n = ss.size
    part = np.zeros(nt)
    step = (n + nt - 1) // nt
    for t in range(nt):
        part[t] = _rank_block(ss, ys, t * step, min(n, (t + 1) * step))
    return part.sum()


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    order = np.argsort(s)
    kernel = _rank_sum_ser if _serial(s.size) else _rank_sum_par
    rank_sum = kernel(s[order], y[order], nb.get_num_threads())
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# -- fairness ----------------------------------------------------------------------------------


@nb.njit(**_OPTS)
def _group_block(y_true, y_pred, group, start, stop, out):
    for i in range(start, stop):
        g = group[i]
        yt = y_true[i]
        yp = y_pred[i]
        out[g, 0] += 1
        out[g, 1] += yp
        out[g, 2] += yt
        out[g, 3] += yt & yp


@nb.njit(parallel=True, **_OPTS)
def _group_counts_par(y_true, y_pred, group, n_groups, nt):
    n = group.size
    local = np.zeros((nt, n_groups, 4), dtype=np.int64)
    step = (n + nt - 1) // nt
    for t in nb.prange(nt):
        _group_block(y_true, y_pred, group, t * step, min(n, (t + 1) * step), local[t])
    return local.sum(axis=0)


@nb.njit(**_OPTS)
def _group_counts_ser(y_true, y_pred, group, n_groups):
    out = np.zeros((n_groups, 4), dtype=np.int64)
    _group_block(y_true, y_pred, group, 0, group.size, out)
    return out


def group_counts(
    y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    if _serial(group.size):
        return _group_counts_ser(y_true, y_pred, group, n_groups)
    return _group_counts_par(y_true, y_pred, group, n_groups, nb.get_num_threads())
