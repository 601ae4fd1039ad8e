"""Per-entity rolling aggregates over event time, for feature pipelines.

For each row, the window holds the rows of the same entity whose time lies in
``(t - window, t]``: the current row, earlier rows within ``window``, and later rows that
tie with it on time. Rows must be sorted by entity, then time (ValueError otherwise).

NaN policy: NaN values are skipped (they do not count); a window without values gives
count 0, sum 0 and NaN mean/min/max. ±inf is a value: sums follow IEEE (inf + -inf = NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, select, to_host
from kernels.transforms._inputs import as_1d, host_or_device
from kernels.transforms.dates import epoch_ticks

AGGREGATES = ("count", "sum", "mean", "min", "max")


def rolling_aggregates(
    entity: Any, time: Any, values: Any, window: Any, backend: str | None = None
) -> Any:
    """A float64 array (n, 5) with columns ``AGGREGATES`` for each row's window.

    ``entity``: integer keys (encode text keys first). ``time``: int64 or datetime64.
    ``window``: a positive int in time's unit, or a ``numpy.timedelta64``.
    """
    entity = as_1d(entity, "entity")
    if len(entity) == 0:  # an empty list arrives as float64
        entity = entity.astype(np.int64)
        time = as_1d(time, "time")
        time = time if time.dtype.kind == "M" else time.astype(np.int64)
    if entity.dtype.kind not in "biu":
        raise ValueError(
            f"entity must hold integer keys, got dtype {entity.dtype}; encode keys to codes first"
        )
    xp = array_module(entity)
    entity = xp.ascontiguousarray(entity, dtype=xp.int64)
    ticks, unit = epoch_ticks(time, "s", "time")
    values = as_1d(values, "values")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"values must be numeric, got dtype {values.dtype}")
    values = array_module(values).ascontiguousarray(values, dtype=np.float64)
    if not len(entity) == len(ticks) == len(values):
        raise ValueError(
            f"entity, time and values differ in length: {len(entity)}, {len(ticks)}, {len(values)}"
        )
    if isinstance(window, np.timedelta64):
        if np.asarray(time).dtype.kind != "M":
            raise ValueError("a timedelta64 window needs datetime64 times")
        window = window / np.timedelta64(1, unit)
        if window != int(window):
            raise ValueError(f"window is not a whole number of {unit}")
    if isinstance(window, bool) or not float(window) > 0 or float(window) != int(window):
        raise ValueError(f"window must be a positive whole number of time units, got {window!r}")
    _check_sorted(entity, ticks)
    # no NumPy shortcut for small inputs: the reference walks rows in Python, slower than Numba
    module = select("transforms", entity, backend=backend)
    return module.rolling(
        host_or_device(module, entity),
        host_or_device(module, ticks),
        host_or_device(module, values),
        int(window),
    )


def _check_sorted(entity: Any, ticks: Any) -> None:
    if len(entity) < 2:
        return
    xp = array_module(entity)
    step_e = entity[1:] - entity[:-1]
    bad = (step_e < 0) | ((step_e == 0) & (ticks[1:] < ticks[:-1]))
    if bool(bad.any()):
        row = int(to_host(xp.argmax(bad))) + 1
        raise ValueError(
            f"rows must be sorted by entity, then time; row {row} comes before its predecessor "
            "(sort with e.g. np.lexsort((time, entity)) first)"
        )
