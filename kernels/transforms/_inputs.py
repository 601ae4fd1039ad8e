"""Shaping inputs the way every transforms backend expects them.

The three backend modules (``reference``, ``cpu``, ``cuda``) expose the same functions with
the same signatures; they take C-contiguous float64 / int64 arrays, so Numba compiles one
signature per kernel however the caller's data is typed. ``kernels._backend.select``
picks the module.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from kernels._backend import array_module, is_device_array, to_host


def host_or_device(module: ModuleType, x: Any) -> Any:
    """Device arrays go to the CUDA module as they are; every other module gets NumPy."""
    return x if module.__name__.endswith(".cuda") else to_host(x)


def as_2d_float(X: Any, name: str) -> Any:
    """X as a C-contiguous 2-d float64 array (1-d is one column), on the device it came on."""
    xp = array_module(X)
    if not is_device_array(X):
        X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    X = xp.ascontiguousarray(X, dtype=xp.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 1- or 2-dimensional, got shape {X.shape}")
    return X


def as_1d(x: Any, name: str) -> Any:
    xp = array_module(x)
    x = x if is_device_array(x) else np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (one column), got shape {x.shape}")
    return xp.ascontiguousarray(x)


def check_columns(X: Any, n_fitted: int, who: str) -> None:
    if X.shape[1] != n_fitted:
        raise ValueError(f"{who}: X has {X.shape[1]} columns, but it was fitted on {n_fitted}")


def check_fitted(estimator: Any, attribute: str) -> None:
    if not hasattr(estimator, attribute):
        raise ValueError(
            f"{type(estimator).__name__} is not fitted yet; call fit() (or from_dict()) first"
        )
