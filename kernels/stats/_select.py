"""Pick the implementation module for a kernel call: reference, cpu or cuda."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from kernels._backend import device_of

BACKENDS = ("reference", "cpu", "cuda")


def select(package: str, *arrays: Any, backend: str | None = None) -> ModuleType:
    """``kernels.<package>.<backend>``; by default where the data lives and FALAJ_DEVICE say.

    Tests pass ``backend`` to run each implementation explicitly (``cuda`` then runs on
    the numba.cuda simulator when NUMBA_ENABLE_CUDASIM=1).
    """
    if backend is None:
        backend = device_of(*arrays)
    elif backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"kernels.{package}.{backend}")
