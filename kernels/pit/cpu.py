"""Numba CPU implementation of ``reference.asof_index``, same signature and result.

1. Counting sort of the rows by entity code: ``offsets`` (n_entities + 1), ``order``
   (row indices grouped by entity, in input order within a group; int32 below 2**31
   rows) and the event times in that layout. Two passes over the codes, in parallel over
   fixed chunks (per-chunk histograms), so the result does not depend on the thread count.
2. Each entity's rows sorted by (event, created, seq), in parallel over entities; a group
   already in order (the usual case: tables are appended in time order) costs one pass
   over its event times, reading created and seq only where event times tie.
3. One binary search per spine row in its entity's sorted event times, in parallel over
   spine rows, writing the answer in spine order: the spine is never sorted or copied.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_CHUNKS = 4  # row chunks counted apart in the counting sort (threads share them out)
_MIN_CHUNK = 1 << 16  # rows per chunk at least
_MAX_HIST = 1 << 24  # chunks x entities, at most (the per-chunk histograms' size)


@njit(parallel=True, cache=True)
def _count(row_code, n_entities, n_chunks):
    """Rows per (chunk, entity code); rows with code -1 are not counted."""
    n = len(row_code)
    size = (n + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, n_entities), dtype=np.int64)
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            k = row_code[i]
            if k >= 0:
                counts[c, k] += 1
    return counts


@njit(cache=True)
def _starts(counts):
    """Entity offsets; ``counts`` becomes each (chunk, entity)'s first slot: chunk c of
    entity k comes after every earlier entity and k's earlier chunks."""
    n_chunks, n_entities = counts.shape
    offsets = np.empty(n_entities + 1, dtype=np.int64)
    total = 0
    for k in range(n_entities):
        offsets[k] = total
        for c in range(n_chunks):
            here = counts[c, k]
            counts[c, k] = total
            total += here
    offsets[n_entities] = total
    return offsets


@njit(parallel=True, cache=True)
def _scatter(row_code, row_event, cursor, order, grouped_event):
    """Row indices grouped by entity (input order within a group) and their event times
    in that layout, scattered in one pass so that later phases read them contiguously."""
    n = len(row_code)
    n_chunks = cursor.shape[0]
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            k = row_code[i]
            if k >= 0:
                at = cursor[c, k]
                order[at] = i
                grouped_event[at] = row_event[i]
                cursor[c, k] = at + 1


def _group(row_code, row_event, n_entities):
    """(offsets, order, grouped_event): the counting sort of the rows by entity code.
    Fixed chunks, not one per thread: the layout does not depend on the thread count."""
    n = len(row_code)
    n_chunks = min(_CHUNKS, max(1, n // _MIN_CHUNK))
    if n_chunks * n_entities > _MAX_HIST:
        n_chunks = 1
    cursor = _count(row_code, n_entities, n_chunks)
    offsets = _starts(cursor)
    total = int(offsets[-1])
    order = np.empty(total, dtype=np.int32 if n < 2**31 else np.int64)
    grouped_event = np.empty(total, dtype=np.int64)
    _scatter(row_code, row_event, cursor, order, grouped_event)
    return offsets, order, grouped_event


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
def _sort_groups(offsets, order, grouped_event, event, created, seq, grouped_created):
    """Sort each entity's rows by (event, created, seq), in place in ``order`` and
    ``grouped_event``; fill ``grouped_created`` when it is not empty. Rows are read through
    ``order`` only on equal event times (and for ``grouped_created``)."""
    n_entities = len(offsets) - 1
    want_created = len(grouped_created) > 0
    for k in prange(n_entities):
        lo = offsets[k]
        hi = offsets[k + 1]
        in_order = True
        for i in range(lo + 1, hi):
            a = grouped_event[i - 1]
            b = grouped_event[i]
            if b < a or (b == a and _before(order[i], order[i - 1], event, created, seq)):
                in_order = False
                break
        if not in_order:
            if hi - lo > 32:
                # by event first (stable, n log n), then insertion sort mends the ties
                perm = np.argsort(grouped_event[lo:hi], kind="mergesort")
                part = order[lo:hi][perm]
                for i in range(hi - lo):
                    order[lo + i] = part[i]
            _insertion_sort(order, lo, hi, event, created, seq)
            for i in range(lo, hi):
                grouped_event[i] = event[order[i]]
        if want_created:
            for i in range(lo, hi):
                grouped_created[i] = created[order[i]]


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
    offsets, order, grouped_event = _group(row_code, row_event, n_entities)
    grouped_created = np.empty(len(order) if created_cutoff else 0, dtype=np.int64)
    _sort_groups(offsets, order, grouped_event, row_event, row_created, row_seq, grouped_created)
    out = np.empty(len(spine_code), dtype=np.int32 if len(row_code) < 2**31 else np.int64)
    _probe(spine_code, spine_time, offsets, order, grouped_event, grouped_created, ttl,
           created_cutoff, out)  # fmt: skip
    return out


# ---------------------------------------------------------------- gathering by the index


@njit(parallel=True, cache=True)
def _bucket_counts(index, shift, n_buckets, n_chunks):
    n = len(index)
    size = (n + n_chunks - 1) // n_chunks
    counts = np.zeros((n_chunks, n_buckets), dtype=np.int64)
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            r = index[i]
            if r >= 0:
                counts[c, r >> shift] += 1
    return counts


@njit(parallel=True, cache=True)
def _bucket_scatter(index, shift, cursor, positions, rows):
    n = len(index)
    n_chunks = cursor.shape[0]
    size = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        for i in range(c * size, min(n, (c + 1) * size)):
            r = index[i]
            if r >= 0:
                at = cursor[c, r >> shift]
                positions[at] = i
                rows[at] = r
                cursor[c, r >> shift] = at + 1


def gather_plan(index: np.ndarray, n_rows: int, shift: int) -> tuple[np.ndarray, ...]:
    """(bucket_offsets, positions, rows): the spine positions with a match, grouped by
    their row's bucket (row >> shift), with that row beside each."""
    n_buckets = max(1, ((max(int(n_rows), 1) - 1) >> shift) + 1)
    n_chunks = min(_CHUNKS, max(1, len(index) // _MIN_CHUNK))
    cursor = _bucket_counts(index, shift, n_buckets, n_chunks)
    offsets = _starts(cursor)
    total = int(offsets[-1])
    wide = len(index) >= 2**31 or n_rows >= 2**31
    positions = np.empty(total, dtype=np.int64 if wide else np.int32)
    rows = np.empty(total, dtype=np.int64 if wide else np.int32)
    _bucket_scatter(index, shift, cursor, positions, rows)
    return offsets, positions, rows


@njit(parallel=True, cache=True)
def gather_into(positions, rows, lo, hi, start, values, valid, out, out_valid):
    """For the planned pairs in [lo, hi) whose row lies in [start, start + len(values)):
    out[position] = values[row - start], out_valid[position] = valid[row - start]."""
    stop = start + len(values)
    for j in prange(lo, hi):
        r = rows[j]
        if r >= start and r < stop:
            p = positions[j]
            out[p] = values[r - start]
            out_valid[p] = valid[r - start]
