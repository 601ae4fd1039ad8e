"""Numba CPU statistics kernels; same signatures and results as ``reference.py``.

Parallel loops split rows into one block per thread with private accumulators, so there
are no atomics and no false sharing (drift splits columns: one column's work per thread
at a time). Whole-array sorts stay in NumPy (faster than Numba's sort); drift needs none,
only small sorts of the few reference intervals that need their values in order.

Small inputs take a serial path: waking the thread pool for a ``parallel=True`` kernel
costs tens of microseconds on an idle machine and milliseconds when its cores are busy
(the launch waits for every worker to be scheduled), more than the work itself below
``SERIAL_BELOW`` elements. Each parallel kernel has a serial twin built from the same
per-block function and called with the same thread count, so the blocks and the order of
every sum are the same on both paths.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

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

CELLS_PER_POINT = 2  # cells of a column's lookup index over its reference range, per point
STEPS = 4  # points of its cell a lookup compares before it falls back to binary search


@nb.njit(**_OPTS)
def _index(points, ncells):
    """The lookup index of one column's sorted points, over ``ncells`` equal cells.

    Returns (P, cell, scale): P is the points padded with -inf before and +inf after,
    cell[t] how many points fall in cells before t, where a value's cell is
    ``int((v - points[0]) * scale)`` clipped to [0, ncells + 1]. That map only rises
    with v, also in floating point, so every point in an earlier cell is below any value
    in cell t and every point in a later cell above it: only the points of the value's
    own cell need a comparison, and the lookup is exact whatever the rounding.
    """
    m = points.size
    P = np.empty(m + 2 + STEPS)
    P[0] = -np.inf
    P[1 : m + 1] = points
    P[m + 1 :] = np.inf
    span = points[m - 1] - points[0]
    scale = ncells / span if span > 0 and span < np.inf else 0.0
    cell = np.zeros(ncells + 3, dtype=np.int32)
    top = ncells + 1
    for k in range(m):
        u = (points[k] - points[0]) * scale  # as _bucket_block computes a value's cell
        cell[(0 if not (u > 0.0) else (top if u >= top else int(u))) + 1] += 1
    for t in range(ncells + 2):
        cell[t + 1] += cell[t]
    return P, cell, scale


BATCH = 512  # values a lookup stage handles before the next stage runs over them
_U = np.uint64
IDX16_UP_TO = 32_767  # columns with at most this many points keep bucket numbers in int16


@nb.njit(**_OPTS)
def _bucket_block(x, P, cell, scale, unit, acc, ties, idx):
    """The bucket stage over a run of one column's values, with its index (P, cell,
    scale) from ``_index``: each finite value's bucket j (P[j] <= v < P[j+1]) into idx
    (-1 for NaN and +-inf, in int16 or int32); per bucket, adds to acc[j] = (values, sum
    of their distances to the bucket's point P[j], in bucket 0 to the first point,
    each times ``unit``) and to ties[j] = values equal to P[j].

    The lookup runs in stages over batches of BATCH values, each stage a loop of
    independent steps: the index cell of each value, then the first STEPS points from
    that cell on compared at once (a cell holding more is finished by binary search),
    then the sums. Written as one loop, each value waited for the last one's loads; the
    stages keep many loads in flight (the lookup took half the time). The sums count no
    finite values on the way (the callers add up acc's counts): a counter kept across
    that loop lived in memory, one more store per value.
    """
    m = P.size - 2 - STEPS
    first = P[1]
    top = float(cell.size - 2)
    flat = acc.reshape(acc.size)  # (count, distance) pairs: bucket j at 2j, no stride
    start = np.empty(BATCH, dtype=np.uint64)
    # indices are uint64 in the loops: Numba then leaves out its negative-index
    # wraparound, a third of the pass's time
    one = _U(1)
    for s in range(0, x.size, BATCH):
        e = min(x.size, s + BATCH)
        for i in range(s, e):  # the cell: how many points lie in earlier cells
            u = (x[_U(i)] - first) * scale  # NaN (inf * 0) only where the index has one cell
            u = u if u > 0.0 else 0.0  # clamped as selects, not branches; NaN to 0
            u = u if u < top else top
            start[_U(i - s)] = _U(cell[_U(int(u))])
        for i in range(s, e):  # the bucket
            v = x[_U(i)]
            c = start[_U(i - s)]
            j = c
            for k in range(1, STEPS + 1):
                j += _U(P[c + _U(k)] <= v)  # points past v's cell are above v: they add 0
            if P[j + one] <= v:  # only in a cell with more than STEPS points
                lo, hi = j + one, _U(m)
                while lo < hi:
                    mid = (lo + hi) >> one
                    if P[mid + one] <= v:
                        lo = mid + one
                    else:
                        hi = mid
                j = lo
            idx[_U(i)] = np.int64(j) if abs(v) < np.inf else np.int64(-1)
        for i in range(s, e):  # the sums
            b = idx[_U(i)]
            if b < 0:
                continue
            j = _U(b)
            d = x[_U(i)] - P[max(j, one)]  # P[1]: bucket 0 measures to the first point
            flat[j + j] += 1.0
            flat[j + j + one] += abs(d) * unit
            if d == 0.0:
                ties[j] += 1


@nb.njit(**_OPTS)
def _bucket_column(x, points, acc, ties, idx):
    # the whole column into zeroed acc (m+1, 2) and ties (m+1), distances divided by
    # x.size so that sums stay finite near the ends of float64; acc[:, 0] sums to the
    # finite values
    P, cell, scale = _index(points, CELLS_PER_POINT * points.size)
    if points.size < 65_535 and x.size > 8 * points.size:
        # cell counts fit uint16: half the index's cache lines, worth the copy on a column
        # long enough to keep the index in cache
        _bucket_block(x, P, cell.astype(np.uint16), scale, 1.0 / x.size, acc, ties, idx)
    else:
        _bucket_block(x, P, cell, scale, 1.0 / x.size, acc, ties, idx)


@nb.njit(**_OPTS)
def _drift_column(x, cuts, points, cdf, counts, eq, idx):
    """Bin counts, point counts, KS and W1 of one current column (see reference.py),
    without sorting it.

    Bucket j holds the current values in [points[j-1], points[j]), where the reference CDF
    is the constant f = cdf[j-1]. One pass counts each bucket's values, those equal to
    its point, and the sum D of their distances to its point. Over the bucket, F_cur
    rises from F(left) (values below, and ties) to F(right) (values up to its last):

    - KS: the largest gap to f is at the bucket's point or at its last value.
    - W1: where F_cur stays on one side of f over the whole bucket (width w), the
      integral of |f - F_cur| is (f - F(right)) * w + D / n below f, and
      (F(right) - f) * w - D / n above it. Only buckets where F_cur crosses f, and the
      last one when the reference CDF ends below 1, need their values in order: those
      are gathered and sorted (a few hundred values in a 1M-row column), and so are the
      buckets holding a bin cut strictly inside, whose count needs the values below it.

    Returns (finite values, KS statistic, W1).
    """
    m = points.size
    acc = np.zeros((m + 1, 2))
    ties = np.zeros(m + 1, dtype=np.int64)
    _bucket_column(x, points, acc, ties, idx)
    eq[:] = ties[1:]
    below = np.empty(m + 2, dtype=np.int64)  # below[j]: current values < points[j-1]
    below[0] = 0
    for j in range(m + 1):
        below[j + 1] = below[j] + np.int64(acc[j, 0])
    n = below[m + 1]  # finite values
    if n == 0:
        counts[:] = 0
        return 0, 0.0, 0.0
    # KS: below the first point the reference CDF is 0
    dmax = below[1] / n
    for k in range(m):
        f = cdf[k]
        dmax = max(dmax, abs(f - (below[k + 1] + eq[k]) / n), abs(f - below[k + 2] / n))
    # W1 over the buckets where F_cur does not cross f; mark those where it does
    # buckets whose values are gathered: special[j] is flags[j + 1], so that the gather
    # reads bucket -1 (not finite) as flags[0], never set: one load and one rarely taken
    # branch a value
    flags = np.zeros(m + 2, dtype=np.bool_)
    special = flags[1:]
    cross = np.zeros(m + 1, dtype=np.bool_)
    per = x.size / n  # the sums are over x.size: per finite value
    area = acc[0, 1] * per  # below the first point: F_cur - 0, D to the first point
    for j in range(1, m + 1):
        f = cdf[j - 1]
        low = (below[j] + eq[j - 1]) / n  # F_cur just right of points[j-1]
        high = below[j + 1] / n  # F_cur after the bucket's last value
        if j == m:
            if acc[m, 0] > ties[m]:  # values above the last point
                if f >= 1.0:
                    area += acc[m, 1] * per  # 1 - F_cur: D
                else:
                    cross[m] = True
            continue
        width = points[j] - points[j - 1]
        if f >= high:
            area += (f - high) * width + acc[j, 1] * per
        elif f <= low:
            area += (high - f) * width - acc[j, 1] * per
        else:
            cross[j] = True
    special[:] = cross
    cut_bucket = np.searchsorted(points, cuts, side="right")
    for t in range(cuts.size):
        j = cut_bucket[t]
        if not (j > 0 and points[j - 1] == cuts[t]):
            special[j] = True
    # gather the special buckets' values, bucket by bucket, and sort each
    start = np.zeros(m + 2, dtype=np.int64)
    for j in range(m + 1):
        start[j + 1] = start[j] + (np.int64(acc[j, 0]) if special[j] else 0)
    buf = np.empty(start[m + 1])
    if buf.size:
        pos = start[: m + 1].copy()
        for i in range(x.size):
            b = idx[_U(i)]
            if flags[_U(b + 1)]:
                buf[_U(pos[_U(b)])] = x[_U(i)]
                pos[_U(b)] += 1
    for j in range(m + 1):
        if not special[j]:
            continue
        seg = buf[start[j] : start[j + 1]]
        seg.sort()
        if not cross[j]:
            continue  # gathered for a cut only: its W1 is already in the sum
        f = cdf[j - 1]
        k = below[j]
        prev = points[j - 1]
        for y in seg:
            area += abs(f - k / n) * (y - prev)
            k += 1
            prev = y
        if j < m:
            area += abs(f - k / n) * (points[j] - prev)
    # bin counts: current values below each cut
    prev_below = 0
    for t in range(cuts.size):
        j = cut_bucket[t]
        b = below[j]
        if special[j]:
            b += np.searchsorted(buf[start[j] : start[j + 1]], cuts[t], side="left")
        counts[t] = b - prev_below
        prev_below = b
    counts[cuts.size] = n - prev_below
    return n, dmax, area


@intrinsic
def _claim(typingctx, counter):
    """counter[0]++ as one atomic step, returning the value before: the next task."""
    sig = types.int64(counter)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.IntType(64)(1), "monotonic")

    return sig, codegen


@nb.njit(**_OPTS)
def _drift_block(
    cur, claimed, cuts, cut_off, points, cdf, point_off, counts, eq, nfin, ks, w1, idx
):
    # the next column not yet claimed, until none is left: one bucket buffer for all.
    # Claimed, not dealt out in turn, so a thread that starts late or is held up by
    # another process leaves its columns to the other (each column's result does not
    # depend on which thread computed it)
    while True:
        c = _claim(claimed)
        if c >= cur.shape[0]:
            break
        c0, c1 = cut_off[c], cut_off[c + 1]
        p0, p1 = point_off[c], point_off[c + 1]
        nfin[c], ks[c], w1[c] = _drift_column(
            cur[c],
            cuts[c0:c1],
            points[p0:p1],
            cdf[p0:p1],
            counts[c0 + c : c1 + c + 1],
            eq[p0:p1],
            idx,
        )


@nb.njit(parallel=True, **_OPTS)
def _drift_par(cur, cuts, cut_off, points, cdf, point_off, idx):
    # idx: one bucket buffer per thread, (threads, n)
    d = cur.shape[0]
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    nfin = np.zeros(d, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    claimed = np.zeros(1, dtype=np.int64)
    for t in nb.prange(idx.shape[0]):
        _drift_block(
            cur, claimed, cuts, cut_off, points, cdf, point_off, counts, eq, nfin, ks, w1, idx[t]
        )
    return counts, eq, ks, w1, nfin


@nb.njit(**_OPTS)
def _drift_ser(cur, cuts, cut_off, points, cdf, point_off, idx):
    d = cur.shape[0]
    counts = np.zeros(cuts.size + d, dtype=np.int64)
    eq = np.zeros(points.size, dtype=np.int64)
    nfin = np.zeros(d, dtype=np.int64)
    ks = np.zeros(d)
    w1 = np.zeros(d)
    claimed = np.zeros(1, dtype=np.int64)
    _drift_block(
        cur, claimed, cuts, cut_off, points, cdf, point_off, counts, eq, nfin, ks, w1, idx[0]
    )
    return counts, eq, ks, w1, nfin


def drift_scan(cur, cuts, cut_off, points, cdf, point_off):
    cols = columns(cur)
    nt = min(nb.get_num_threads(), cols.shape[0])
    serial = _serial(cur.size) or nt < 2
    # bucket numbers run to the column's point count: int16 halves the buffer's traffic
    # (the bucket pass writes it, the gather reads it again) for MAX_POINTS-sized sketches
    widest = int(np.diff(point_off).max(initial=0))
    kind = np.int16 if widest <= IDX16_UP_TO else np.int32
    idx = np.empty((1 if serial else nt, cols.shape[1]), dtype=kind)
    kernel = _drift_ser if serial else _drift_par
    return kernel(cols, cuts, cut_off, points, cdf, point_off, idx)


@nb.njit(parallel=True, **_OPTS)
def _transpose(X, out):
    # blocks of rows, read in order: each row's values go to d output streams (as cheap
    # as a copy; column by column within a block took twice the CPU time)
    n, d = X.shape
    nblocks = (n + 511) // 512
    for b in nb.prange(nblocks):
        for i in range(b * 512, min(n, (b + 1) * 512)):
            for c in range(d):
                out[c, i] = X[i, c]


def columns(X: np.ndarray) -> np.ndarray:
    """(d, n) C-contiguous: the columns of a (n, d) array as rows (a view when X is
    Fortran-ordered, else a blocked transpose)."""
    if X.flags.f_contiguous:
        return X.T
    if _serial(X.size) or X.shape[1] < 2:
        return np.ascontiguousarray(X.T)
    out = np.empty((X.shape[1], X.shape[0]))
    _transpose(X, out)
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
