"""numba.cuda statistics kernels; same signatures and results as ``reference.py``.

Each element is one thread: it finds its bin or rank by binary search and adds its share
with an atomic, so no kernel needs a scan. Sorting uses the array module (CuPy on a GPU,
NumPy under the simulator). Inputs may be NumPy arrays (copied to the GPU when one is
present) or CuPy arrays; results come back to the host as NumPy values.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from kernels import _scalar
from kernels._backend import array_module, gpu_available, to_host

# The simulator runs each thread as a Python thread: small blocks keep it usable.
TPB = 32 if config.ENABLE_CUDASIM else 256


def _xp(*arrays):
    """The array module to hold data for a launch, moving host arrays to a real GPU."""
    if gpu_available():
        import cupy

        return cupy, [cupy.asarray(a) for a in arrays]
    return np, list(arrays)


def _blocks(n: int) -> int:
    return max(1, math.ceil(n / TPB))


@cuda.jit(device=True)
def _search_right(a, lo, hi, v):
    """First index in a[lo:hi] whose value is > v (as an absolute index)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def _search_left(a, lo, hi, v):
    """First index in a[lo:hi] whose value is >= v."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit
def _histogram_kernel(x, edges, out):
    i = cuda.grid(1)
    if i >= x.size:
        return
    v = x[i]
    nbins = edges.size - 1
    if not (v >= edges[0] and v <= edges[nbins]):
        return
    b = nbins - 1 if v == edges[nbins] else _search_right(edges, 0, nbins + 1, v) - 1
    cuda.atomic.add(out, b, 1)


def histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    xp, (x, edges) = _xp(x, edges)
    out = xp.zeros(edges.size - 1, dtype=np.int64)
    if x.size:
        _histogram_kernel[_blocks(x.size), TPB](x, edges, out)
    return to_host(out)


_interpolate = cuda.jit(device=True)(_scalar.interpolate)


@cuda.jit
def _interp_kernel(s, q, out):
    j = cuda.grid(1)
    if j < q.size:
        out[j] = _interpolate(s, s.size, q[j])


def quantiles(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    xp, (x, q) = _xp(x, q)
    s = xp.sort(x[xp.isfinite(x)])
    out = xp.empty(q.size)
    _interp_kernel[_blocks(q.size), TPB](s, q, out)
    return to_host(out)


@cuda.jit
def _drift_current_kernel(cur, lo, hi, cuts, cut_off, points, cdf, point_off, counts, eq, ks, w1):
    # thread (c, i): the i-th sorted current value of column c
    i, c = cuda.grid(2)
    if c >= cur.shape[0]:
        return
    a, b = lo[c], hi[c]
    i += a
    if i >= b:
        return
    n = b - a
    v = cur[c, i]
    c0, c1 = cut_off[c], cut_off[c + 1]
    cuda.atomic.add(counts, c0 + c + (_search_right(cuts, c0, c1, v) - c0), 1)
    p0, p1 = point_off[c], point_off[c + 1]
    k = _search_right(points, p0, p1, v)  # points[p0:k] <= v
    if k > p0 and points[k - 1] == v:
        cuda.atomic.add(eq, k - 1, 1)
    if p1 == p0 or (i + 1 < b and cur[c, i + 1] == v):
        return  # only the last of a run of ties evaluates the CDFs
    f_ref = cdf[k - 1] if k > p0 else 0.0
    gap = abs(f_ref - (i + 1 - a) / n)
    cuda.atomic.max(ks, c, gap)
    nxt = math.inf
    if i + 1 < b:
        nxt = cur[c, i + 1]
    if k < p1:
        nxt = min(nxt, points[k])
    if nxt < math.inf:
        cuda.atomic.add(w1, c, gap * (nxt - v))


@cuda.jit
def _drift_points_kernel(cur, lo, hi, points, cdf, point_off, ks, w1):
    # thread (c, k): reference point k of column c, unless a current value equals it
    k, c = cuda.grid(2)
    if c >= cur.shape[0]:
        return
    p0, p1 = point_off[c], point_off[c + 1]
    k += p0
    if k >= p1:
        return
    a, b = lo[c], hi[c]
    if b == a:
        return
    u = points[k]
    r = _search_right(cur[c], a, b, u)
    if r > a and cur[c, r - 1] == u:
        return  # handled by the current-value thread
    gap = abs(cdf[k] - (r - a) / (b - a))
    cuda.atomic.max(ks, c, gap)
    nxt = math.inf
    if r < b:
        nxt = cur[c, r]
    if k + 1 < p1:
        nxt = min(nxt, points[k + 1])
    if nxt < math.inf:
        cuda.atomic.add(w1, c, gap * (nxt - u))


def drift_scan(cur, cuts, cut_off, points, cdf, point_off):
    """As reference.drift_scan; the columns are sorted on the device first."""
    s = sorted_columns(cur)
    xp = array_module(s)
    d, n = s.shape
    # finite values of each sorted row: after the -infs, before +infs and NaNs (0-d arrays:
    # CuPy's searchsorted takes no NumPy values, and before 14 no Python scalars either)
    neg_inf, pos_inf = xp.asarray(-np.inf), xp.asarray(np.inf)
    lo = np.array([int(xp.searchsorted(s[c], neg_inf, side="right")) for c in range(d)])
    hi = np.array([int(xp.searchsorted(s[c], pos_inf, side="left")) for c in range(d)])
    nfin = (hi - lo).astype(np.int64)
    xp, (lo, hi, cuts, cut_off, points, cdf, point_off) = _xp(
        lo, hi, cuts, cut_off, points, cdf, point_off
    )
    counts = xp.zeros(cuts.size + d, dtype=np.int64)
    eq = xp.zeros(points.size, dtype=np.int64)
    ks = xp.zeros(d)
    w1 = xp.zeros(d)
    if d and n:
        _drift_current_kernel[(_blocks(n), d), (TPB, 1)](
            s, lo, hi, cuts, cut_off, points, cdf, point_off, counts, eq, ks, w1
        )
        widest = int(to_host(point_off[1:] - point_off[:-1]).max())
        if widest:
            _drift_points_kernel[(_blocks(widest), d), (TPB, 1)](
                s, lo, hi, points, cdf, point_off, ks, w1
            )
    return to_host(counts), to_host(eq), to_host(ks), to_host(w1), nfin


def sorted_columns(X):
    """(d, n): each column of a (n, d) array as a sorted row (NaN last), on the device."""
    xp, (X,) = _xp(X)
    return xp.sort(X.T, axis=1)


@cuda.jit
def _rank_kernel(ss, ys, out):
    i = cuda.grid(1)
    if i >= ss.size or ys[i] == 0:
        return
    v = ss[i]
    first = _search_left(ss, 0, ss.size, v)
    end = _search_right(ss, 0, ss.size, v)
    cuda.atomic.add(out, 0, (first + end + 1) / 2.0)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    xp, (y, s) = _xp(y, s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    order = xp.argsort(s)
    out = xp.zeros(1)
    _rank_kernel[_blocks(s.size), TPB](s[order], y[order], out)
    return float((float(to_host(out)[0]) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@cuda.jit
def _group_kernel(y_true, y_pred, group, out):
    i = cuda.grid(1)
    if i >= group.size:
        return
    g = group[i]
    yt = y_true[i]
    yp = y_pred[i]
    cuda.atomic.add(out, (g, 0), 1)
    if yp:
        cuda.atomic.add(out, (g, 1), 1)
    if yt:
        cuda.atomic.add(out, (g, 2), 1)
        if yp:
            cuda.atomic.add(out, (g, 3), 1)


def group_counts(
    y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, n_groups: int
) -> np.ndarray:
    xp, (y_true, y_pred, group) = _xp(y_true, y_pred, group)
    out = xp.zeros((n_groups, 4), dtype=np.int64)
    if group.size:
        _group_kernel[_blocks(group.size), TPB](y_true, y_pred, group, out)
    return to_host(out)
