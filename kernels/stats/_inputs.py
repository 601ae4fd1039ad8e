"""Input checks shared by the public statistics functions: one rule for every backend."""

from __future__ import annotations

from typing import Any

from kernels._backend import array_module


def as_float_1d(x: Any, name: str, where: str):
    """x as a contiguous float64 vector in its own array module (NumPy or CuPy)."""
    xp = array_module(x)
    try:
        a = xp.ascontiguousarray(xp.asarray(x, dtype=xp.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {name} must be numeric ({exc})") from None
    if a.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-d, got shape {a.shape}")
    return a


def as_binary(y: Any, name: str, where: str):
    """0/1 (or bool) labels as uint8; anything else is a ValueError."""
    xp = array_module(y)
    a = xp.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-d, got shape {a.shape}")
    if a.dtype != xp.bool_:
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{where}: {name} must hold 0/1 labels, got dtype {a.dtype}")
        if a.size and not bool(((a == 0) | (a == 1)).all()):
            raise ValueError(f"{where}: {name} must hold only 0 and 1 (or booleans)")
    return xp.ascontiguousarray(a.astype(xp.uint8))
