"""Numba CPU implementation of ``reference.asof_index``, same signature and result.

1. Counting sort of the rows by entity code: ``offsets`` (n_entities + 1) and ``order``
   (row indices grouped by entity, in input order within a group). Two passes over the
   codes, in parallel over fixed chunks (per-chunk histograms), so the result does not
   depend on the thread count.
2. Each entity's rows sorted by (event, created, seq), in parallel over entities; a group
   already in order (the usual case: tables are appended in time order) costs one pass.
3. One binary search per spine row in its entity's sorted event times, in parallel over
   spine rows, writing the answer in spine order: the spine is never sorted or copied.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNK = 1 << 16  # rows per histogram chunk in the counting sort


@njit(parallel=True, cache=True)
def _group(row_code, n_entities):
    n = len(row_code)
    n_chunks = max(1, (n + _CHUNK - 1) // _CHUNK)
    counts = (
        np.zeros((n_chunks, n_entities), dtype=np.int64)
        if n_chunks * n_entities <= (1 << 26)
        else np.zeros((1, n_entities), dtype=np.int64)
    )
    if counts.shape[0] == n_chunks and n_chunks > 1:
        for c in prange(n_chunks):
            for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
                k = row_code[i]
                if k >= 0:
                    counts[c, k] += 1
        offsets = np.zeros(n_entities + 1, dtype=np.int64)
        # exclusive prefix over (entity, chunk): chunk c of entity k starts after every
        # earlier entity and the earlier chunks of k
        total = 0
        for k in range(n_entities):
            offsets[k] = total
            for c in range(n_chunks):
                here = counts[c, k]
                counts[c, k] = total
                total += here
        offsets[n_entities] = total
        order = np.empty(total, dtype=np.int64)
        for c in prange(n_chunks):
            for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
                k = row_code[i]
                if k >= 0:
                    order[counts[c, k]] = i
                    counts[c, k] += 1
        return offsets, order
    # few rows, or too many entities for a histogram per chunk: one sequential pass
    hist = np.zeros(n_entities + 1, dtype=np.int64)
    for i in range(n):
        k = row_code[i]
        if k >= 0:
            hist[k + 1] += 1
    offsets = np.cumsum(hist)
    cursor = offsets[:-1].copy()
    order = np.empty(offsets[-1], dtype=np.int64)
    for i in range(n):
        k = row_code[i]
        if k >= 0:
            order[cursor[k]] = i
            cursor[k] += 1
    return offsets, order


@njit(inline="always")
def _before(a, b, event, created, seq):
    """Row a sorts strictly before row b in (event, created, seq) order."""
    if event[a] != event[b]:
        return event[a] < event[b]
    if created[a] != created[b]:
        return created[a] < created[b]
    return seq[a] < seq[b]


@njit(cache=True)
def _insertion_sort(order, lo, hi, event, created, seq):
    for i in range(lo + 1, hi):
        r = order[i]
        j = i - 1
        while j >= lo and _before(r, order[j], event, created, seq):
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = r


@njit(parallel=True, cache=True)
def _sort_groups(offsets, order, event, created, seq, sorted_event, sorted_created):
    n_entities = len(offsets) - 1
    for k in prange(n_entities):
        lo = offsets[k]
        hi = offsets[k + 1]
        in_order = True
        for i in range(lo + 1, hi):
            if _before(order[i], order[i - 1], event, created, seq):
                in_order = False
                break
        if not in_order:
            if hi - lo > 32:
                # by event first (stable, n log n), then insertion sort mends the ties
                part = order[lo:hi].copy()
                keys = np.empty(hi - lo, dtype=np.int64)
                for i in range(hi - lo):
                    keys[i] = event[part[i]]
                perm = np.argsort(keys, kind="mergesort")
                for i in range(hi - lo):
                    order[lo + i] = part[perm[i]]
            _insertion_sort(order, lo, hi, event, created, seq)
        for i in range(lo, hi):
            sorted_event[i] = event[order[i]]
            sorted_created[i] = created[order[i]]


@njit(parallel=True, cache=True)
def _probe(spine_code, spine_time, offsets, order, sorted_event, sorted_created, ttl, cutoff, out):
    for i in prange(len(spine_code)):
        k = spine_code[i]
        if k < 0:
            out[i] = -1
            continue
        lo = offsets[k]
        t = spine_time[i]
        # the first position whose event time is after t
        a = lo
        b = offsets[k + 1]
        while a < b:
            m = (a + b) >> 1
            if sorted_event[m] <= t:
                a = m + 1
            else:
                b = m
        p = a - 1
        if cutoff:
            while p >= lo and sorted_created[p] > t:
                if ttl >= 0 and sorted_event[p] < t - ttl:
                    p = lo - 1
                    break
                p -= 1
        if p < lo or (ttl >= 0 and sorted_event[p] < t - ttl):
            out[i] = -1
        else:
            out[i] = order[p]


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
    n_entities = max(int(n_entities), 1)
    offsets, order = _group(row_code, n_entities)
    sorted_event = np.empty(len(order), dtype=np.int64)
    sorted_created = np.empty(len(order) if created_cutoff else 0, dtype=np.int64)
    if created_cutoff:
        _sort_groups(offsets, order, row_event, row_created, row_seq, sorted_event, sorted_created)
    else:
        # the created times are needed to sort, not to probe: keep no copy of them
        scratch = np.empty(len(order), dtype=np.int64)
        _sort_groups(offsets, order, row_event, row_created, row_seq, sorted_event, scratch)
        del scratch
    out = np.empty(len(spine_code), dtype=np.int64)
    _probe(spine_code, spine_time, offsets, order, sorted_event, sorted_created, ttl,
           created_cutoff, out)  # fmt: skip
    return out
