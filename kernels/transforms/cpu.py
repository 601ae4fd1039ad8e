"""Numba CPU implementations, one per function in ``reference.py`` with the same signature.

``parallel=True`` where the work is per row or per column; ``fastmath`` stays off so
results match the reference to rounding. Inputs are C-contiguous float64 / int64 arrays
(the estimators see to it), so each kernel compiles once and ``cache=True`` keeps it.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import get_num_threads, njit, prange

from kernels import _scalar

_CHUNK = 16384  # rows per partial sum: fixed, so results do not depend on the thread count


def _empty(shape, dtype=np.float64) -> np.ndarray:
    """Outputs come from NumPy's allocator, which asks for huge pages on large arrays:
    first-touch page faults otherwise cost as much as the transform itself."""
    return np.empty(shape, dtype=dtype)


# ---------------------------------------------------------------- numeric columns


@njit(parallel=True, cache=True)
def column_summary(X):
    n, d = X.shape
    n_chunks = max(1, (n + _CHUNK - 1) // _CHUNK)
    counts = np.zeros((n_chunks, d), dtype=np.int64)
    sums = np.zeros((n_chunks, d))
    los = np.full((n_chunks, d), np.inf)
    his = np.full((n_chunks, d), -np.inf)
    for c in prange(n_chunks):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            for j in range(d):
                v = X[i, j]
                if not np.isnan(v):
                    counts[c, j] += 1
                    sums[c, j] += v
                    los[c, j] = min(los[c, j], v)
                    his[c, j] = max(his[c, j], v)
    count = counts.sum(axis=0)
    total = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for c in range(n_chunks):
        for j in range(d):
            total[j] += sums[c, j]
            lo[j] = min(lo[j], los[c, j])
            hi[j] = max(hi[j], his[c, j])
    mean = total / np.maximum(count, 1)
    parts = np.zeros((n_chunks, d))
    for c in prange(n_chunks):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            for j in range(d):
                v = X[i, j]
                if not np.isnan(v):
                    parts[c, j] += (v - mean[j]) ** 2
    m2 = parts.sum(axis=0)
    return count, n - count, total, m2, lo, hi


def center_scale(X, shift, scale):
    return _center_scale(X, shift, scale, _empty(X.shape))


@njit(parallel=True, cache=True)
def _center_scale(X, shift, scale, out):
    n, d = X.shape
    for i in prange(n):
        for j in range(d):
            out[i, j] = (X[i, j] - shift[j]) / scale[j]
    return out


def log1p(X):
    """NumPy's SIMD log1p on row blocks, one per thread (NumPy releases the GIL).

    Numba calls the scalar libm ``log1p``, about 3x slower than NumPy's vectorised loop,
    so here threads over NumPy beat a Numba kernel; results are NumPy's to the bit.
    """
    out = _empty(X.shape)
    n = X.shape[0]
    if n < 2 * _CHUNK:
        _log1p_block(X, out)
        return out
    n_threads = get_num_threads()
    bounds = np.linspace(0, n, n_threads + 1).astype(np.int64)
    blocks = [(X[a:b], out[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    list(_pool(n_threads).map(lambda xo: _log1p_block(*xo), blocks))
    return out


def _log1p_block(x, out):
    with np.errstate(invalid="ignore", divide="ignore"):
        np.log1p(x, out=out)


@functools.cache
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n_threads, thread_name_prefix="falaj-log1p")


def clip(X, lo, hi):
    return _clip(X, lo, hi, _empty(X.shape))


@njit(parallel=True, cache=True)
def _clip(X, lo, hi, out):
    n, d = X.shape
    for i in prange(n):
        for j in range(d):
            v = X[i, j]
            out[i, j] = lo[j] if v < lo[j] else (hi[j] if v > hi[j] else v)
    return out


interpolate = njit(cache=True)(_scalar.interpolate)


@njit(parallel=True, cache=True)
def quantiles(X, qs):
    n, d = X.shape
    out = np.empty((len(qs), d))
    for j in prange(d):
        col = np.empty(n)
        m = 0
        for i in range(n):
            if not np.isnan(X[i, j]):
                col[m] = X[i, j]
                m += 1
        col = np.sort(col[:m])
        for k in range(len(qs)):
            out[k, j] = interpolate(col, m, qs[k])
    return out


@njit(cache=True)
def _count_le(edges, m, v):
    """How many of the first m sorted edges are <= v (searchsorted side='right')."""
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) // 2
        if edges[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, cache=True)
def bucketize(X, edges, n_edges):
    n, d = X.shape
    out = np.empty((n, d), dtype=np.int64)
    for i in prange(n):
        for j in range(d):
            v = X[i, j]
            out[i, j] = -1 if np.isnan(v) else _count_le(edges[j], n_edges[j], v)
    return out


def impute(X, fill, indicator_cols):
    return _impute(X, fill, indicator_cols, _empty((X.shape[0], X.shape[1] + len(indicator_cols))))


@njit(parallel=True, cache=True)
def _impute(X, fill, indicator_cols, out):
    n, d = X.shape
    k = len(indicator_cols)
    for i in prange(n):
        for j in range(d):
            v = X[i, j]
            out[i, j] = fill[j] if np.isnan(v) else v
        for c in range(k):
            out[i, d + c] = 1.0 if np.isnan(X[i, indicator_cols[c]]) else 0.0
    return out


# ---------------------------------------------------------------- categories


@njit(cache=True)
def unique(values):
    kept = np.empty_like(values)
    m = 0
    for v in values:
        if v == v:  # NaN is missing, not a category
            kept[m] = v
            m += 1
    return np.unique(kept[:m])


def lookup_codes(values, categories):
    """Dense table lookup when int categories span a small range, else binary search."""
    k = len(categories)
    if values.dtype.kind == "i" and categories.dtype.kind == "i" and k:
        lo, span = int(categories[0]), int(categories[-1]) - int(categories[0])
        if span < max(4096, 8 * k):  # a table that fits in cache beats log2(k) branches
            table = np.full(span + 1, -1, dtype=np.int64)
            table[categories - lo] = np.arange(k)
            return _lookup_dense(values, lo, table, _empty(len(values), np.int64))
    return _lookup_search(values, categories, _empty(len(values), np.int64))


@njit(parallel=True, cache=True)
def _lookup_dense(values, lo, table, out):
    n = len(values)
    m = len(table)
    for i in prange(n):
        at = values[i] - lo
        out[i] = table[at] if 0 <= at < m else -1
    return out


@njit(parallel=True, cache=True)
def _lookup_search(values, categories, out):
    n = len(values)
    k = len(categories)
    for i in prange(n):
        v = values[i]
        lo, hi = 0, k
        while lo < hi:  # searchsorted side='left'
            mid = (lo + hi) // 2
            if categories[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo if lo < k and categories[lo] == v else -1
    return out


@njit(parallel=True, cache=True)
def bincount(codes, weights, k):
    n = len(codes)
    n_chunks = 4  # fixed: partials cost chunks * k memory, and sums stay thread-count free
    size = (n + n_chunks - 1) // n_chunks
    weighted = len(weights) > 0
    counts = np.zeros((n_chunks, k), dtype=np.int64)
    sums = np.zeros((n_chunks, k))
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            code = codes[i]
            if code >= 0:
                counts[c, code] += 1
                if weighted:
                    sums[c, code] += weights[i]
    return counts.sum(axis=0), sums.sum(axis=0)


def one_hot(codes, k):
    return _one_hot(codes, _empty((len(codes), k)))


@njit(parallel=True, cache=True)
def _one_hot(codes, out):
    n, k = out.shape
    for i in prange(n):
        for c in range(k):
            out[i, c] = 1.0 if codes[i] == c else 0.0
    return out


def take(codes, table, default):
    return _take(codes, table, default, _empty(len(codes)))


@njit(parallel=True, cache=True)
def _take(codes, table, default, out):
    n = len(codes)
    for i in prange(n):
        out[i] = table[codes[i]] if codes[i] >= 0 else default
    return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def _splitmix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(parallel=True, cache=True)
def hash_int64(keys, n_buckets, seed):
    bits = keys.view(np.uint64)
    salt = np.uint64(seed + 1) * _GOLDEN
    nb = np.uint64(n_buckets)
    out = np.empty(len(keys), dtype=np.int64)
    for i in prange(len(keys)):
        out[i] = np.int64(_splitmix(bits[i] + salt) % nb)
    return out


@njit(parallel=True, cache=True)
def hash_bytes(data, lengths, n_buckets, seed):
    salt = np.uint64(seed + 1) * _GOLDEN
    nb = np.uint64(n_buckets)
    out = np.empty(data.shape[0], dtype=np.int64)
    for i in prange(data.shape[0]):
        h = _FNV_OFFSET
        for j in range(lengths[i]):
            h = (h ^ np.uint64(data[i, j])) * _FNV_PRIME
        out[i] = np.int64(_splitmix(h + salt) % nb)
    return out


# ---------------------------------------------------------------- time

_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_NAT = np.iinfo(np.int64).min


@njit(cache=True)
def civil_from_days(days):
    """(year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


@njit(cache=True)
def days_to_jan1(year):
    """Days from 1970-01-01 to January 1st of ``year``."""
    y = year - 1  # January counts as month 13 of the previous March-based year
    era = y // 400
    yoe = y - era * 400
    doe = yoe * 365 + yoe // 4 - yoe // 100 + 306
    return era * 146097 + doe - 719468


@njit(parallel=True, cache=True)
def _datetime_parts(t, ticks_per_second):
    per_hour = ticks_per_second * 3600
    per_day = per_hour * 24
    out = np.empty((len(t), 6), dtype=np.int64)
    for i in prange(len(t)):
        if t[i] == _NAT:
            out[i, :] = -1
            continue
        days = t[i] // per_day
        year, month, day = civil_from_days(days)
        out[i, 0] = year
        out[i, 1] = month
        out[i, 2] = day
        out[i, 3] = (days + 3) % 7
        out[i, 4] = (t[i] - days * per_day) // per_hour
        out[i, 5] = days - days_to_jan1(year) + 1
    return out


def datetime_parts(t: np.ndarray, unit: str) -> np.ndarray:
    return _datetime_parts(t, _TICKS_PER_SECOND[unit])


# ---------------------------------------------------------------- rolling windows


@njit(cache=True)
def _segment_starts(entity):
    n = len(entity)
    starts = np.empty(n + 1, dtype=np.int64)
    m = 0
    for i in range(n):
        if i == 0 or entity[i] != entity[i - 1]:
            starts[m] = i
            m += 1
    starts[m] = n
    return starts[: m + 1]


@njit(cache=True)
def _rolling_segment(time, values, window, s, e, out, dq_min, dq_max):
    """Sliding window over one entity's rows [s, e): O(rows) with monotonic deques.

    The finite sum is compensated (Neumaier) so values leaving the window leave no error
    behind; infinities are counted apart and the sum is recomputed if it overflows.
    """
    lo = s  # first row in the window
    hi = s  # one past the last row in the window
    count = 0
    total = 0.0
    comp = 0.0
    n_pos_inf = 0
    n_neg_inf = 0
    overflowed = False
    min_head = s
    min_tail = s  # deque of row indices, stored in dq_min[s:e]
    max_head = s
    max_tail = s
    i = s
    while i < e:
        t = time[i]
        while hi < e and time[hi] == t:  # rows tying on time share the window
            v = values[hi]
            if not np.isnan(v):
                count += 1
                if np.isinf(v):
                    if v > 0:
                        n_pos_inf += 1
                    else:
                        n_neg_inf += 1
                else:
                    u = total + v
                    comp += (total - u) + v if abs(total) >= abs(v) else (v - u) + total
                    total = u
                while min_tail > min_head and values[dq_min[min_tail - 1]] >= v:
                    min_tail -= 1
                dq_min[min_tail] = hi
                min_tail += 1
                while max_tail > max_head and values[dq_max[max_tail - 1]] <= v:
                    max_tail -= 1
                dq_max[max_tail] = hi
                max_tail += 1
            hi += 1
        while time[lo] <= t - window:
            v = values[lo]
            if not np.isnan(v):
                count -= 1
                if np.isinf(v):
                    if v > 0:
                        n_pos_inf -= 1
                    else:
                        n_neg_inf -= 1
                else:
                    u = total - v
                    comp += (total - u) - v if abs(total) >= abs(v) else (-v - u) + total
                    total = u
            lo += 1
        while min_head < min_tail and dq_min[min_head] < lo:
            min_head += 1
        while max_head < max_tail and dq_max[max_head] < lo:
            max_head += 1
        if not np.isfinite(total) or overflowed:
            # An overflowed running sum cannot be repaired by subtraction: sum afresh.
            total = 0.0
            comp = 0.0
            for r in range(lo, hi):
                v = values[r]
                if np.isfinite(v):
                    u = total + v
                    comp += (total - u) + v if abs(total) >= abs(v) else (v - u) + total
                    total = u
            overflowed = not np.isfinite(total)
        finite_sum = total + comp if np.isfinite(total) else total
        if n_pos_inf > 0 and n_neg_inf > 0:
            wsum = np.nan
        elif n_pos_inf > 0:
            wsum = np.inf
        elif n_neg_inf > 0:
            wsum = -np.inf
        else:
            wsum = finite_sum
        for r in range(i, hi):
            out[r, 0] = count
            out[r, 1] = wsum
            if count > 0:
                out[r, 2] = wsum / count
                out[r, 3] = values[dq_min[min_head]]
                out[r, 4] = values[dq_max[max_head]]
            else:
                out[r, 2] = np.nan
                out[r, 3] = np.nan
                out[r, 4] = np.nan
        i = hi


@njit(parallel=True, cache=True)
def rolling(entity, time, values, window):
    n = len(entity)
    out = np.empty((n, 5))
    starts = _segment_starts(entity)
    dq_min = np.empty(n, dtype=np.int64)
    dq_max = np.empty(n, dtype=np.int64)
    for k in prange(len(starts) - 1):
        _rolling_segment(time, values, window, starts[k], starts[k + 1], out, dq_min, dq_max)
    return out
