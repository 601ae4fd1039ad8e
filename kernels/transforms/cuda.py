"""CUDA implementations (``numba.cuda``), one per function in ``reference.py``.

Each function takes NumPy arrays (copied to the device; the CUDA simulator runs these in
tests) or CuPy arrays (used in place), and returns the result where the input lived.
Kernels use grid-stride loops over a flat index, so one launch shape fits every size.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from kernels import _scalar
from kernels._backend import is_device_array

# The simulator runs every thread as a Python thread: small blocks keep tests quick.
_THREADS = 32 if config.ENABLE_CUDASIM else 256
_MAX_BLOCKS = 4 if config.ENABLE_CUDASIM else 4096


def _grid(n: int) -> tuple[int, int]:
    return max(1, min(_MAX_BLOCKS, (n + _THREADS - 1) // _THREADS)), _THREADS


def _dev(a):
    return a if is_device_array(a) else cuda.to_device(np.ascontiguousarray(a))


def _back(d, like):
    """A device result, returned where ``like`` lives (CuPy on a GPU, else NumPy)."""
    if is_device_array(like):
        import cupy

        return cupy.asarray(d)
    return d.copy_to_host()


def _xp(like):
    if is_device_array(like):
        import cupy

        return cupy
    return np


# ---------------------------------------------------------------- numeric columns


@cuda.jit
def _summary_pass1(X, count, total, lo, hi):
    j = cuda.blockIdx.y
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    stride = cuda.gridDim.x * cuda.blockDim.x
    c = 0
    s = 0.0
    mn = math.inf
    mx = -math.inf
    for i in range(start, X.shape[0], stride):
        v = X[i, j]
        if not math.isnan(v):
            c += 1
            s += v
            mn = min(mn, v)
            mx = max(mx, v)
    cuda.atomic.add(count, j, c)
    cuda.atomic.add(total, j, s)
    cuda.atomic.min(lo, j, mn)
    cuda.atomic.max(hi, j, mx)


@cuda.jit
def _summary_pass2(X, count, total, m2):
    j = cuda.blockIdx.y
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    stride = cuda.gridDim.x * cuda.blockDim.x
    mean = total[j] / max(count[j], 1)
    s = 0.0
    for i in range(start, X.shape[0], stride):
        v = X[i, j]
        if not math.isnan(v):
            s += (v - mean) * (v - mean)
    cuda.atomic.add(m2, j, s)


def column_summary(X):
    n, d = X.shape
    count = cuda.to_device(np.zeros(d, dtype=np.int64))
    total = cuda.to_device(np.zeros(d))
    m2 = cuda.to_device(np.zeros(d))
    lo = cuda.to_device(np.full(d, np.inf))
    hi = cuda.to_device(np.full(d, -np.inf))
    if n and d:
        blocks, threads = _grid(n)
        dX = _dev(X)
        _summary_pass1[(blocks, d), threads](dX, count, total, lo, hi)
        _summary_pass2[(blocks, d), threads](dX, count, total, m2)
    c = count.copy_to_host()
    return c, n - c, total.copy_to_host(), m2.copy_to_host(), lo.copy_to_host(), hi.copy_to_host()


@cuda.jit
def _center_scale(X, shift, scale, out):
    d = X.shape[1]
    start = cuda.grid(1)
    for idx in range(start, X.shape[0] * d, cuda.gridsize(1)):
        i = idx // d
        j = idx - i * d
        out[i, j] = (X[i, j] - shift[j]) / scale[j]


def center_scale(X, shift, scale):
    out = cuda.device_array(X.shape, dtype=np.float64)
    if X.size:
        _center_scale[_grid(X.size)](_dev(X), _dev(shift), _dev(scale), out)
    return _back(out, X)


@cuda.jit(device=True)
def _log1p(v):
    if v < -1.0:
        return math.nan
    if v == -1.0:
        return -math.inf
    return math.log1p(v)


@cuda.jit
def _log1p_kernel(X, out):
    d = X.shape[1]
    for idx in range(cuda.grid(1), X.shape[0] * d, cuda.gridsize(1)):
        i = idx // d
        j = idx - i * d
        out[i, j] = _log1p(X[i, j])


def log1p(X):
    out = cuda.device_array(X.shape, dtype=np.float64)
    if X.size:
        _log1p_kernel[_grid(X.size)](_dev(X), out)
    return _back(out, X)


@cuda.jit
def _clip(X, lo, hi, out):
    d = X.shape[1]
    for idx in range(cuda.grid(1), X.shape[0] * d, cuda.gridsize(1)):
        i = idx // d
        j = idx - i * d
        v = X[i, j]
        out[i, j] = lo[j] if v < lo[j] else (hi[j] if v > hi[j] else v)


def clip(X, lo, hi):
    out = cuda.device_array(X.shape, dtype=np.float64)
    if X.size:
        _clip[_grid(X.size)](_dev(X), _dev(lo), _dev(hi), out)
    return _back(out, X)


@cuda.jit
def _fill_sort_buffer(X, buf, count):
    """buf[j, i] = X[i, j], with NaN and the padding as +inf (sorted to the end)."""
    P = buf.shape[1]
    for idx in range(cuda.grid(1), buf.shape[0] * P, cuda.gridsize(1)):
        j = idx // P
        i = idx - j * P
        v = math.inf
        if i < X.shape[0]:
            v = X[i, j]
            if math.isnan(v):
                v = math.inf
            else:
                cuda.atomic.add(count, j, 1)
        buf[j, i] = v


@cuda.jit
def _bitonic_step(buf, j, k):
    P = buf.shape[1]
    for idx in range(cuda.grid(1), buf.shape[0] * P, cuda.gridsize(1)):
        col = idx // P
        i = idx - col * P
        partner = i ^ j
        if partner > i:
            a = buf[col, i]
            b = buf[col, partner]
            ascending = (i & k) == 0
            if (a > b) == ascending and a != b:
                buf[col, i] = b
                buf[col, partner] = a


def _sort_columns(X):
    """Each column of X sorted on the device (NaN dropped): (buffer (d, P), counts (d,))."""
    n, d = X.shape
    P = 1
    while n > P:
        P *= 2
    buf = cuda.device_array((d, P), dtype=np.float64)
    count = cuda.to_device(np.zeros(d, dtype=np.int64))
    grid = _grid(d * P)
    _fill_sort_buffer[grid](_dev(X), buf, count)
    k = 2
    while k <= P:  # bitonic sort: log2(P)^2 / 2 launches of one compare-swap pass
        j = k // 2
        while j > 0:
            _bitonic_step[grid](buf, j, k)
            j //= 2
        k *= 2
    return buf, count


_interpolate = cuda.jit(device=True)(_scalar.interpolate)


@cuda.jit
def _quantiles(buf, count, qs, out):
    d = buf.shape[0]
    for idx in range(cuda.grid(1), qs.shape[0] * d, cuda.gridsize(1)):
        k = idx // d
        j = idx - k * d
        out[k, j] = _interpolate(buf[j], count[j], qs[k])


def quantiles(X, qs):
    n, d = X.shape
    if n == 0:
        return _xp(X).full((len(qs), d), np.nan)
    out = cuda.device_array((len(qs), d), dtype=np.float64)
    buf, count = _sort_columns(X)
    if len(qs) and d:
        _quantiles[_grid(len(qs) * d)](buf, count, _dev(qs), out)
    return _back(out, X)


@cuda.jit(device=True)
def _count_le(edges, m, v):
    lo = 0
    hi = m
    while lo < hi:
        mid = (lo + hi) // 2
        if edges[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit
def _bucketize(X, edges, n_edges, out):
    d = X.shape[1]
    for idx in range(cuda.grid(1), X.shape[0] * d, cuda.gridsize(1)):
        i = idx // d
        j = idx - i * d
        v = X[i, j]
        out[i, j] = -1 if math.isnan(v) else _count_le(edges[j], n_edges[j], v)


def bucketize(X, edges, n_edges):
    out = cuda.device_array(X.shape, dtype=np.int64)
    if X.size:
        _bucketize[_grid(X.size)](_dev(X), _dev(edges), _dev(n_edges), out)
    return _back(out, X)


@cuda.jit
def _impute(X, fill, indicator_cols, out):
    d = X.shape[1]
    w = out.shape[1]
    for idx in range(cuda.grid(1), X.shape[0] * w, cuda.gridsize(1)):
        i = idx // w
        c = idx - i * w
        if c < d:
            v = X[i, c]
            out[i, c] = fill[c] if math.isnan(v) else v
        else:
            out[i, c] = 1.0 if math.isnan(X[i, indicator_cols[c - d]]) else 0.0


def impute(X, fill, indicator_cols):
    n, d = X.shape
    out = cuda.device_array((n, d + len(indicator_cols)), dtype=np.float64)
    if out.size:
        # An empty index array cannot be copied to the device: pass a dummy that is not read.
        cols = indicator_cols if len(indicator_cols) else np.zeros(1, dtype=np.int64)
        _impute[_grid(out.size)](_dev(X), _dev(fill), _dev(cols), out)
    return _back(out, X)


# ---------------------------------------------------------------- categories


@cuda.jit
def _run_starts(s, m, flags):
    for i in range(cuda.grid(1), m, cuda.gridsize(1)):
        flags[i] = 1 if i == 0 or s[i] != s[i - 1] else 0


def unique(values):
    xp = _xp(values)
    if xp is not np:  # CuPy has a tuned unique; the numba path below is for NumPy input
        return xp.unique(values[~xp.isnan(values)] if values.dtype.kind == "f" else values)
    if len(values) == 0:
        return values[:0].copy()
    # The device sort works in float64: int64 keys beyond 2**53 would not survive it.
    if values.dtype.kind != "f" and np.abs(values).max() >= 2**53:
        return np.unique(values)
    buf, count = _sort_columns(values.astype(np.float64).reshape(-1, 1))
    m = int(count.copy_to_host()[0])
    flags = cuda.device_array(max(m, 1), dtype=np.int8)
    if m:
        _run_starts[_grid(m)](buf[0], m, flags)
    sorted_values = buf[0].copy_to_host()[:m]
    return sorted_values[flags.copy_to_host()[:m] == 1].astype(values.dtype)


@cuda.jit
def _lookup_codes(values, categories, out):
    k = categories.shape[0]
    for i in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
        v = values[i]
        lo = 0
        hi = k
        while lo < hi:
            mid = (lo + hi) // 2
            if categories[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo if lo < k and categories[lo] == v else -1


def lookup_codes(values, categories):
    n = len(values)
    if len(categories) == 0 or n == 0:
        return _xp(values).full(n, -1, dtype=np.int64)
    out = cuda.device_array(n, dtype=np.int64)
    _lookup_codes[_grid(n)](_dev(values), _dev(categories), out)
    return _back(out, values)


@cuda.jit
def _bincount(codes, weights, weighted, counts, sums):
    for i in range(cuda.grid(1), codes.shape[0], cuda.gridsize(1)):
        c = codes[i]
        if c >= 0:
            cuda.atomic.add(counts, c, 1)
            if weighted:
                cuda.atomic.add(sums, c, weights[i])


def bincount(codes, weights, k):
    counts = cuda.to_device(np.zeros(max(k, 1), dtype=np.int64))
    sums = cuda.to_device(np.zeros(max(k, 1)))
    weighted = len(weights) > 0
    if len(codes) and k:
        w = weights if weighted else np.zeros(1)
        _bincount[_grid(len(codes))](_dev(codes), _dev(w), weighted, counts, sums)
    return counts.copy_to_host()[:k], sums.copy_to_host()[:k]


@cuda.jit
def _one_hot(codes, out):
    k = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * k, cuda.gridsize(1)):
        i = idx // k
        c = idx - i * k
        out[i, c] = 1.0 if codes[i] == c else 0.0


def one_hot(codes, k):
    out = cuda.device_array((len(codes), k), dtype=np.float64)
    if out.size:
        _one_hot[_grid(out.size)](_dev(codes), out)
    return _back(out, codes)


@cuda.jit
def _take(codes, table, default, out):
    for i in range(cuda.grid(1), codes.shape[0], cuda.gridsize(1)):
        out[i] = table[codes[i]] if codes[i] >= 0 else default


def take(codes, table, default):
    n = len(codes)
    if n == 0 or len(table) == 0:
        return _xp(codes).full(n, default, dtype=np.float64)
    out = cuda.device_array(n, dtype=np.float64)
    _take[_grid(n)](_dev(codes), _dev(table), default, out)
    return _back(out, codes)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@cuda.jit(device=True)
def _splitmix(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@cuda.jit
def _hash_int64(bits, salt, nb, out):
    for i in range(cuda.grid(1), bits.shape[0], cuda.gridsize(1)):
        out[i] = _splitmix(bits[i] + salt) % nb


@cuda.jit
def _hash_bytes(data, lengths, salt, nb, out):
    for i in range(cuda.grid(1), data.shape[0], cuda.gridsize(1)):
        h = _FNV_OFFSET
        for j in range(lengths[i]):
            h = (h ^ np.uint64(data[i, j])) * _FNV_PRIME
        out[i] = _splitmix(h + salt) % nb


def _salt(seed: int) -> np.uint64:
    return np.uint64((int(seed + 1) * int(_GOLDEN)) % 2**64)


def hash_int64(keys, n_buckets, seed):
    n = len(keys)
    out = cuda.device_array(n, dtype=np.int64)
    if n:
        with np.errstate(over="ignore"):  # uint64 wrap-around is the point (simulator)
            _hash_int64[_grid(n)](
                _dev(keys.view(np.uint64)), _salt(seed), np.uint64(n_buckets), out
            )
    return _back(out, keys)


def hash_bytes(data, lengths, n_buckets, seed):
    n = data.shape[0]
    out = cuda.device_array(n, dtype=np.int64)
    if n:
        with np.errstate(over="ignore"):
            _hash_bytes[_grid(n)](_dev(data), _dev(lengths), _salt(seed), np.uint64(n_buckets), out)
    return _back(out, data)


# ---------------------------------------------------------------- time

_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_NAT = np.iinfo(np.int64).min


@cuda.jit
def _datetime_parts(t, ticks_per_second, out):
    per_hour = ticks_per_second * 3600
    per_day = per_hour * 24
    for i in range(cuda.grid(1), t.shape[0], cuda.gridsize(1)):
        ti = t[i]
        if ti == _NAT:
            for c in range(6):
                out[i, c] = -1
            continue
        days = ti // per_day
        # Howard Hinnant's civil_from_days
        z = days + 719468
        era = z // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        day = doy - (153 * mp + 2) // 5 + 1
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        # days from the epoch to January 1st of year
        y = year - 1
        era1 = y // 400
        yoe1 = y - era1 * 400
        jan1 = era1 * 146097 + yoe1 * 365 + yoe1 // 4 - yoe1 // 100 + 306 - 719468
        out[i, 0] = year
        out[i, 1] = month
        out[i, 2] = day
        out[i, 3] = (days + 3) % 7
        out[i, 4] = (ti - days * per_day) // per_hour
        out[i, 5] = days - jan1 + 1


def datetime_parts(t, unit):
    n = len(t)
    out = cuda.device_array((n, 6), dtype=np.int64)
    if n:
        _datetime_parts[_grid(n)](_dev(t), np.int64(_TICKS_PER_SECOND[unit]), out)
    return _back(out, t)


# ---------------------------------------------------------------- rolling windows


@cuda.jit
def _rolling(entity, time, values, window, out):
    n = entity.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        e = entity[i]
        t = time[i]
        hi = i + 1  # rows tying on time share the window: extend to the last of them
        while hi < n and entity[hi] == e and time[hi] == t:
            hi += 1
        c = 0
        s = 0.0
        mn = math.inf
        mx = -math.inf
        r = hi - 1
        while r >= 0 and entity[r] == e and time[r] > t - window:
            v = values[r]
            if not math.isnan(v):
                c += 1
                s += v
                mn = min(mn, v)
                mx = max(mx, v)
            r -= 1
        out[i, 0] = c
        out[i, 1] = s
        if c > 0:
            out[i, 2] = s / c
            out[i, 3] = mn
            out[i, 4] = mx
        else:
            out[i, 2] = math.nan
            out[i, 3] = math.nan
            out[i, 4] = math.nan


def rolling(entity, time, values, window):
    n = len(entity)
    out = cuda.device_array((n, 5), dtype=np.float64)
    if n:
        _rolling[_grid(n)](_dev(entity), _dev(time), _dev(values), np.int64(window), out)
    return _back(out, entity)
