"""Brute force in NumPy: the oracle ``cpu.py`` is tested against. Quadratic; for tests.

Same signature as ``cpu.asof_index``: validated int64 arrays, ``ttl`` -1 for none.
"""

from __future__ import annotations

import numpy as np


def asof_index(
    spine_code: np.ndarray,
    spine_time: np.ndarray,
    row_code: np.ndarray,
    row_event: np.ndarray,
    row_created: np.ndarray,
    row_seq: np.ndarray,
    n_entities: int,
    ttl: int,
    created_cutoff: bool,
) -> np.ndarray:
    out = np.full(len(spine_code), -1, dtype=np.int64)
    for i, (code, t) in enumerate(zip(spine_code.tolist(), spine_time.tolist(), strict=True)):
        if code < 0:
            continue
        seen = (row_code == code) & (row_event <= t)
        if ttl >= 0:
            seen &= row_event >= t - ttl
        if created_cutoff:
            seen &= row_created <= t
        candidates = np.flatnonzero(seen)
        if len(candidates) == 0:
            continue
        # the last in (event, created, seq) order: lexsort sorts by its last key first
        keys = (row_seq[candidates], row_created[candidates], row_event[candidates])
        out[i] = candidates[np.lexsort(keys)[-1]]
    return out


def gather_plan(index: np.ndarray, n_rows: int, shift: int) -> tuple[np.ndarray, ...]:
    n_buckets = max(1, ((max(int(n_rows), 1) - 1) >> shift) + 1)
    matched = np.flatnonzero(index >= 0)
    bucket = index[matched] >> shift
    order = np.argsort(bucket, kind="stable")
    offsets = np.zeros(n_buckets + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=n_buckets), out=offsets[1:])
    return offsets, matched[order], index[matched][order]


def gather_into(positions, rows, lo, hi, start, values, valid, out, out_valid) -> None:
    r = rows[lo:hi]
    inside = (r >= start) & (r < start + len(values))
    p = positions[lo:hi][inside]
    out[p] = values[r[inside] - start]
    out_valid[p] = valid[r[inside] - start]
