"""Point-in-time ("as-of") lookups: for each spine row, the feature row it may see.

One public function, ``asof_index``, over integer arrays: entity codes (dense, ``-1`` for
none), times as int64 ticks of one unit, and the tie-breakers ``created`` and ``seq``. For
each spine row it gives the index of the latest feature row of the same entity with
``event <= time`` and, with a TTL, ``event >= time - ttl`` (both edges included); ties on
``event`` go to the highest ``created``, then the highest ``seq``; with
``created_cutoff``, rows with ``created > time`` are not seen. No such row gives ``-1``.

Implementations: ``reference`` (brute force in NumPy, the oracle the tests compare
against) and ``cpu`` (Numba: a counting sort of the rows by entity, a sort of each
entity's rows by (event, created, seq), then a binary search per spine row, in parallel,
writing in spine order). There is no CUDA implementation: the join's cost is reading and
gathering columns, which stays on the host.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

BACKENDS = ("reference", "cpu")


def _int64(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {a.shape}")
    if len(a) and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _codes(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.int32 and a.ndim == 1:
        return np.ascontiguousarray(a)  # half the memory of int64 codes, kept as they are
    return _int64(a, name)


def asof_index(
    spine_code: Any,
    spine_time: Any,
    row_code: Any,
    row_event: Any,
    row_created: Any,
    row_seq: Any,
    n_entities: int,
    ttl: int | None = None,
    created_cutoff: bool = False,
    backend: str | None = None,
) -> np.ndarray:
    """One index per spine row: the row it sees, or -1. The cpu backend gives int32 while
    there are fewer than 2**31 rows (half the memory), else int64; the reference int64.

    ``spine_code`` / ``row_code``: int32 or int64 entity codes in ``[0, n_entities)``, ``-1`` for a row
    that matches nothing (a null or unknown entity, a null time). ``spine_time``,
    ``row_event``, ``row_created``: int64 ticks of the same unit; ``ttl``: a non-negative
    number of those ticks, or None for no limit. ``row_seq``: unique per row. ``backend``:
    ``reference`` or ``cpu`` (default).
    """
    spine_code = _codes(spine_code, "spine_code")
    spine_time = _int64(spine_time, "spine_time")
    row_code = _codes(row_code, "row_code")
    row_event = _int64(row_event, "row_event")
    row_created = _int64(row_created, "row_created")
    row_seq = _int64(row_seq, "row_seq")
    if len(spine_code) != len(spine_time):
        raise ValueError(
            f"spine_code and spine_time differ in length: {len(spine_code)}, {len(spine_time)}"
        )
    n = len(row_code)
    if not len(row_event) == len(row_created) == len(row_seq) == n:
        raise ValueError(
            "row_code, row_event, row_created and row_seq differ in length: "
            f"{n}, {len(row_event)}, {len(row_created)}, {len(row_seq)}"
        )
    n_entities = int(n_entities)
    for name, codes in (("spine_code", spine_code), ("row_code", row_code)):
        if len(codes) and (codes.min() < -1 or codes.max() >= n_entities):
            raise ValueError(f"{name} must lie in [-1, {n_entities}), n_entities={n_entities}")
    if ttl is not None and (isinstance(ttl, bool) or int(ttl) != ttl or ttl < 0):
        raise ValueError(f"ttl must be a non-negative whole number of ticks or None, got {ttl!r}")
    if backend is None:
        backend = "cpu"
    elif backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    module = importlib.import_module(f"kernels.pit.{backend}")
    return module.asof_index(
        spine_code,
        spine_time,
        row_code,
        row_event,
        row_created,
        row_seq,
        n_entities,
        -1 if ttl is None else int(ttl),
        bool(created_cutoff),
    )


class Gather:
    """Fills output columns from the matched rows, reading the rows once, batch by batch,
    in row order (so a table that does not fit in memory twice can stream through).

    ``index``: int32 or int64 per output position, the row it takes or -1 (left as it is in
    ``out``). ``fill(start, values, valid, out, out_valid)`` takes one batch: the rows
    ``start .. start + len(values)``, their values and validity (bool), and writes every
    position whose row is among them. Positions are bucketed by row once, so each call
    touches only the positions of its rows.

    Example::

        g = Gather(index)
        for start, batch_values, batch_valid in batches:
            g.fill(start, batch_values, batch_valid, out, out_valid)
    """

    SHIFT = 16  # rows per bucket: 2**16

    def __init__(self, index: Any, backend: str | None = None) -> None:
        index = _codes(index, "index")  # int32 indexes kept as they are
        if backend is None:
            backend = "cpu"
        elif backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
        self._module = importlib.import_module(f"kernels.pit.{backend}")
        self.n_rows = int(index.max()) + 1 if len(index) else 0
        self.offsets, self.positions, self.rows = self._module.gather_plan(
            index, self.n_rows, self.SHIFT
        )

    def fill(
        self, start: int, values: np.ndarray, valid: np.ndarray, out: np.ndarray,
        out_valid: np.ndarray,
    ) -> None:  # fmt: skip
        if len(values) != len(valid):
            raise ValueError(f"values and valid differ in length: {len(values)}, {len(valid)}")
        if len(values) == 0 or start >= self.n_rows:
            return
        n_buckets = len(self.offsets) - 1
        first = start >> self.SHIFT
        last = min((start + len(values) - 1) >> self.SHIFT, n_buckets - 1)
        lo, hi = int(self.offsets[first]), int(self.offsets[last + 1])
        if hi > lo:
            self._module.gather_into(
                self.positions, self.rows, lo, hi, start, values, valid, out, out_valid
            )


__all__ = ["BACKENDS", "Gather", "asof_index"]
