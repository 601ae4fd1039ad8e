"""Calendar parts of timestamps: year, month, day, weekday, hour, day of year (UTC).

Input is ``datetime64`` (any unit) or int64 epoch counts in ``unit`` ("s", "ms", "us",
"ns"). NaN policy: NaT (the int64 minimum) gives -1 in every part; there is no other
missing value. The proleptic Gregorian calendar is used for all years, as NumPy does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, is_device_array, select
from kernels.transforms._inputs import as_1d, host_or_device

PARTS = ("year", "month", "day", "weekday", "hour", "day_of_year")
UNITS = ("s", "ms", "us", "ns")


def epoch_ticks(t: Any, unit: str, name: str = "t") -> tuple[Any, str]:
    """(int64 ticks, unit) of datetime64 or integer input; coarse datetime64 units -> s."""
    t = as_1d(t, name)
    if t.dtype.kind == "M":
        if is_device_array(t):
            raise ValueError(f"{name}: pass device timestamps as int64 epoch counts with unit=")
        got = np.datetime_data(t.dtype)[0]
        if got not in UNITS:
            if got in ("ps", "fs", "as"):
                raise ValueError(f"{name}: datetime64[{got}] is finer than ns; convert to ns first")
            t, got = t.astype("datetime64[s]"), "s"
        return np.ascontiguousarray(t.view(np.int64)), got
    if t.dtype.kind not in "iu":
        raise ValueError(f"{name} must be datetime64 or integer epoch counts, got dtype {t.dtype}")
    if unit not in UNITS:
        raise ValueError(f"unit={unit!r} is not one of {', '.join(UNITS)}")
    return array_module(t).ascontiguousarray(t, dtype=np.int64), unit


def datetime_parts(t: Any, unit: str = "s", backend: str | None = None) -> Any:
    """An int64 array (n, 6): columns ``PARTS`` (weekday: Monday=0; day_of_year from 1)."""
    ticks, unit = epoch_ticks(t, unit)
    module = select("transforms", ticks, backend=backend, numpy_when_small=True)
    return module.datetime_parts(host_or_device(module, ticks), unit)
