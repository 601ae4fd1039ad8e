"""Choosing a backend module and shaping inputs the way every backend expects them.

The three backend modules (``reference``, ``cpu``, ``cuda``) expose the same functions with
the same signatures; they take C-contiguous float64 / int64 arrays, so Numba compiles one
signature per kernel however the caller's data is typed.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from kernels._backend import array_module, device_of, is_device_array, to_host

BACKENDS = ("reference", "cpu", "cuda")
# Below this many input elements, starting Numba's worker threads costs more than the
# work (milliseconds on a loaded machine, against microseconds for NumPy): small inputs,
# such as a model server's single requests, take the NumPy path. Both paths are checked
# against each other by the tests.
SMALL_WORK = 1 << 15


def backend_module(backend: str | None, *arrays: Any, numpy_when_small: bool = True) -> ModuleType:
    """The module that runs a kernel: ``backend`` if given, else where the data lives.

    NumPy data runs on the Numba CPU path (``FALAJ_DEVICE=cuda`` without a GPU raises
    ``DeviceUnavailable``), or on NumPy when it is small; CuPy data runs on the CUDA path.
    Kernels whose NumPy reference is a Python loop pass ``numpy_when_small=False``.
    """
    if backend is None:
        backend = device_of(*arrays)
        small = sum(getattr(a, "size", 0) for a in arrays) < SMALL_WORK
        if backend == "cpu" and small and numpy_when_small:
            backend = "reference"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"kernels.transforms.{backend}")


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


class Transformer:
    """``fit_transform`` for estimators whose ``fit`` and ``transform`` take the same data,
    as scikit-learn's ``TransformerMixin`` gives it."""

    def fit_transform(self, X: Any) -> Any:
        return self.fit(X).transform(X)  # type: ignore[attr-defined]
