"""Input checks for the estimators: one rule, whatever backend runs the fit."""

from __future__ import annotations

from typing import Any

from kernels._backend import array_module


def as_matrix(X: Any, where: str):
    """X as a C-contiguous finite float64 (n, d) array in its own array module."""
    xp = array_module(X)
    try:
        X = xp.asarray(X, dtype=xp.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: X must be numeric ({exc})") from None
    if X.ndim != 2:
        raise ValueError(f"{where}: X must be 2-d (rows, features), got shape {X.shape}")
    if not bool(xp.isfinite(X).all()):
        raise ValueError(f"{where}: X contains NaN or infinity; impute or drop those rows first")
    return xp.ascontiguousarray(X)


def as_target(y: Any, n: int, where: str):
    xp = array_module(y)
    try:
        y = xp.asarray(y, dtype=xp.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: y must be numeric ({exc})") from None
    if y.shape[0] != n:
        raise ValueError(f"{where}: X has {n} rows but y has {y.shape[0]}")
    if not bool(xp.isfinite(y).all()):
        raise ValueError(f"{where}: y contains NaN or infinity")
    return xp.ascontiguousarray(y)
