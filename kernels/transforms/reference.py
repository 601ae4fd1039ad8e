"""Plain NumPy implementations: the oracle the Numba and CUDA backends are tested against.

Written for clarity, not speed. Every function here has a twin with the same name and
signature in ``cpu.py`` and ``cuda.py``. Inputs are already validated and shaped by the
public estimators: 2-d C-contiguous float64 ``X``, 1-d int64 codes and keys.
"""

from __future__ import annotations

import numpy as np

from kernels import _scalar

# ---------------------------------------------------------------- numeric columns


def column_summary(X: np.ndarray) -> tuple[np.ndarray, ...]:
    """(count, nan_count, sum, m2, min, max) per column; NaN is missing.

    Columns without observed values give min=+inf, max=-inf (callers turn these into NaN).
    """
    observed = ~np.isnan(X)
    count = observed.sum(axis=0).astype(np.int64)
    nan_count = (X.shape[0] - count).astype(np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        total = np.where(observed, X, 0.0).sum(axis=0)
        mean = total / np.maximum(count, 1)
        m2 = np.where(observed, (X - mean) ** 2, 0.0).sum(axis=0)
    lo = np.where(observed, X, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(observed, X, -np.inf).max(axis=0, initial=-np.inf)
    return count, nan_count, total, m2, lo, hi


def center_scale(X: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(X - shift) / scale per column."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return (X - shift) / scale


def log1p(X: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log1p(X)


def clip(X: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Clip each column to [lo, hi]; NaN stays NaN."""
    return np.where(lo > X, lo, np.where(hi < X, hi, X))


def quantiles(X: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles of each column's non-NaN values, shape (len(qs), d).

    A column without observed values gives NaN. Inputs must not hold ±inf.
    """
    out = np.full((len(qs), X.shape[1]), np.nan)
    for j in range(X.shape[1]):
        col = np.sort(X[:, j][~np.isnan(X[:, j])])
        for k, q in enumerate(qs):
            out[k, j] = interpolate(col, len(col), q)
    return out


def interpolate(s: np.ndarray, m: int, q: float) -> float:
    """The q-quantile of the first m (sorted) values of s; the formula every backend uses."""
    return float(_scalar.interpolate(s, m, q))


def bucketize(X: np.ndarray, edges: np.ndarray, n_edges: np.ndarray) -> np.ndarray:
    """Bucket index per value: how many of the column's edges are <= the value; NaN -> -1.

    ``edges`` is (d, k) with the first ``n_edges[j]`` entries of row j in use (sorted).
    """
    out = np.empty(X.shape, dtype=np.int64)
    for j in range(X.shape[1]):
        out[:, j] = np.searchsorted(edges[j, : n_edges[j]], X[:, j], side="right")
    out[np.isnan(X)] = -1
    return out


def impute(X: np.ndarray, fill: np.ndarray, indicator_cols: np.ndarray) -> np.ndarray:
    """NaN -> the column's fill value; then a 0/1 missing indicator per listed column."""
    missing = np.isnan(X)
    filled = np.where(missing, fill, X)
    return np.hstack([filled, missing[:, indicator_cols].astype(np.float64)])


# ---------------------------------------------------------------- categories


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (1-d float64 or int64), NaN left out."""
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    return np.unique(values)


def lookup_codes(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Position of each value in the sorted ``categories``; -1 if absent (or NaN)."""
    if len(categories) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    at = np.searchsorted(categories, values)
    at_c = np.minimum(at, len(categories) - 1)
    return np.where(categories[at_c] == values, at_c, -1).astype(np.int64)


def bincount(codes: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows per code and (when weights has one entry per row) the weight sum per code."""
    seen = codes >= 0
    counts = np.bincount(codes[seen], minlength=k).astype(np.int64)
    if len(weights) == 0:
        return counts, np.zeros(k)
    # astype: NumPy gives int64 for an empty weighted bincount
    return counts, np.bincount(codes[seen], weights=weights[seen], minlength=k).astype(np.float64)


def one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    """Row i has a 1 in column codes[i]; code -1 gives a row of zeros."""
    out = np.zeros((len(codes), k))
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    return out


def take(codes: np.ndarray, table: np.ndarray, default: float) -> np.ndarray:
    """table[code] per row; ``default`` for code -1."""
    if len(table) == 0:
        return np.full(len(codes), default)
    return np.where(codes >= 0, table[np.maximum(codes, 0)], default)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _splitmix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def hash_int64(keys: np.ndarray, n_buckets: int, seed: int) -> np.ndarray:
    """Bucket of each int64 key: splitmix64(key + (seed + 1) * golden) mod n_buckets."""
    with np.errstate(over="ignore"):
        z = keys.view(np.uint64) + np.uint64(seed + 1) * _GOLDEN
        return (_splitmix(z) % np.uint64(n_buckets)).astype(np.int64)


def hash_bytes(data: np.ndarray, lengths: np.ndarray, n_buckets: int, seed: int) -> np.ndarray:
    """Bucket of each byte string (row of ``data``, first ``lengths[i]`` bytes): FNV-1a 64,
    mixed with the seed through splitmix64."""
    with np.errstate(over="ignore"):
        h = np.full(len(data), _FNV_OFFSET, dtype=np.uint64)
        for j in range(data.shape[1]):
            step = (h ^ data[:, j].astype(np.uint64)) * _FNV_PRIME
            h = np.where(j < lengths, step, h)
        z = h + np.uint64(seed + 1) * _GOLDEN
        return (_splitmix(z) % np.uint64(n_buckets)).astype(np.int64)


# ---------------------------------------------------------------- time


def datetime_parts(t: np.ndarray, unit: str) -> np.ndarray:
    """(year, month, day, weekday Mon=0, hour, day-of-year) per int64 epoch ``t`` in ``unit``.

    The int64 minimum (NumPy's NaT) gives -1 in every part.
    """
    dt = t.view(f"datetime64[{unit}]")
    i64 = np.int64
    years = dt.astype("datetime64[Y]")
    months = dt.astype("datetime64[M]")
    days = dt.astype("datetime64[D]")
    hours = dt.astype("datetime64[h]")
    out = np.column_stack(
        [
            years.astype(i64) + 1970,
            months.astype(i64) - years.astype(i64) * 12 + 1,
            (days - months.astype("datetime64[D]")).astype(i64) + 1,
            (days.astype(i64) + 3) % 7,  # 1970-01-01 was a Thursday
            hours.astype(i64) - days.astype(i64) * 24,
            (days - years.astype("datetime64[D]")).astype(i64) + 1,
        ]
    ).astype(i64)
    out[np.isnat(dt)] = -1
    return out


def rolling(entity: np.ndarray, time: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """(count, sum, mean, min, max) of each row's entity over event times in (t - window, t].

    Rows are sorted by entity, then time; rows that tie on time share one window. NaN values
    are skipped; a window without values gives count 0, sum 0 and NaN mean/min/max.
    """
    n = len(entity)
    out = np.empty((n, 5))
    starts = np.concatenate([[0], np.flatnonzero(np.diff(entity)) + 1, [n]])
    for s, e in zip(starts[:-1], starts[1:], strict=True):
        ts = time[s:e]
        for i in range(s, e):
            lo = s + np.searchsorted(ts, time[i] - window, side="right")
            hi = s + np.searchsorted(ts, time[i], side="right")
            win = values[lo:hi]
            win = win[~np.isnan(win)]
            c = len(win)
            total = win.sum() if c else 0.0
            out[i] = (
                c,
                total,
                total / c if c else np.nan,
                win.min() if c else np.nan,
                win.max() if c else np.nan,
            )
    return out
