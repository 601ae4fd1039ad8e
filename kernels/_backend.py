"""Where a kernel runs: the device setting, GPU detection and the choice of backend module.

The device is ``auto`` (the default), ``cpu`` or ``cuda``. ``set_device`` sets it for the
process (the appliance passes its ``device`` setting when it opens); until then the
``FALAJ_DEVICE`` environment variable is read, and without it the device is ``auto``.
``auto`` uses the GPU only when CuPy is installed and a real device answers; otherwise it
falls back to the CPU with a single log line. An explicit ``cuda`` on a machine without a
usable GPU is a clear error. Data that already lives on the GPU (a CuPy array) always
runs there.

``select`` is the one dispatcher: every public kernel function and estimator asks it for
the backend module (``reference``, ``cpu`` or ``cuda``) that runs a call.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from types import ModuleType
from typing import Any

log = logging.getLogger("falaj.kernels")

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("reference", "cpu", "cuda")
# Below this many input elements, starting Numba's worker threads costs more than the
# work (milliseconds on a loaded machine, against microseconds for NumPy): small inputs,
# such as a model server's single requests, take the NumPy path in the kernels that ask
# for it (``numpy_when_small``). Tests check both paths against each other.
SMALL_WORK = 1 << 15

_device: str | None = None  # set_device's choice; None: FALAJ_DEVICE decides


class DeviceUnavailable(RuntimeError):
    """Device ``cuda`` was asked for, but no usable CUDA GPU is present."""


def _checked(device: Any, where: str) -> str:
    value = device.strip().lower() if isinstance(device, str) else device
    if value not in DEVICES:
        raise ValueError(f"{where}={device!r} is not one of {', '.join(DEVICES)}")
    return value


def set_device(device: str | None) -> None:
    """Run kernels on ``"auto"``, ``"cpu"`` or ``"cuda"`` from now on, in this process.

    Takes precedence over ``FALAJ_DEVICE``; ``None`` clears it, so that the environment
    decides again. Case and surrounding spaces are ignored; any other value is a
    ValueError naming the allowed ones. Whether a GPU answers is checked at the first
    kernel call that needs it (``DeviceUnavailable`` then for ``cuda`` without one).

    Example: ``kernels.set_device(settings["device"])`` when the appliance opens.
    """
    global _device
    _device = None if device is None else _checked(device, "device")


def get_device() -> str:
    """The device asked for: ``set_device``'s value, else ``FALAJ_DEVICE``, else ``auto``.

    This is the request, not where work runs: ``resolve_device`` turns ``auto`` into
    ``cpu`` or ``cuda``.
    """
    if _device is not None:
        return _device
    env = os.environ.get("FALAJ_DEVICE", "").strip()
    return _checked(env, "FALAJ_DEVICE") if env else "auto"


def _source() -> str:
    """How the user changes the device, for error and log messages."""
    if _device is not None:
        return "the device setting (kernels.set_device)"
    return "FALAJ_DEVICE"


@functools.cache
def _cupy():
    """The CuPy module if a real GPU answers, else None (detected once)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None  # the simulator is for tests of numba.cuda kernels, not a GPU
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        cupy.zeros(1).sum()  # the first real device call raises without a driver
        return cupy
    except Exception as exc:  # ImportError, CUDARuntimeError, driver errors
        log.debug("CuPy unavailable: %s", exc)
        return None


def gpu_available() -> bool:
    return _cupy() is not None


@functools.cache
def _announce_fallback() -> None:
    log.info("device auto: no usable CUDA GPU found, kernels run on the CPU")


def resolve_device() -> str:
    """The device new work runs on: 'cpu' or 'cuda'."""
    device = get_device()
    if device == "cpu":
        return "cpu"
    if gpu_available():
        return "cuda"
    if device == "cuda":
        source = _source()
        raise DeviceUnavailable(
            f"{source} asks for cuda, but no usable CUDA GPU was found (is cupy-cuda12x "
            f"installed and the NVIDIA driver loaded?); set {source} to auto or cpu to run "
            "on the CPU"
        )
    _announce_fallback()
    return "cpu"


def is_device_array(x: Any) -> bool:
    """True for arrays that live on the GPU (CuPy), without importing CuPy."""
    return type(x).__module__.startswith("cupy")


def device_of(*arrays: Any) -> str:
    """Where to run a kernel over these arrays: data on the GPU runs there."""
    if any(is_device_array(a) for a in arrays):
        return "cuda"
    return resolve_device()


def select(
    package: str, *arrays: Any, backend: str | None = None, numpy_when_small: bool = False
) -> ModuleType:
    """The module ``kernels.<package>.<backend>`` that runs a kernel call over ``arrays``.

    ``backend`` given (``reference``, ``cpu`` or ``cuda``): that one; tests run each
    implementation so (``cuda`` runs on the numba.cuda simulator when
    NUMBA_ENABLE_CUDASIM=1). ``None``: where the data lives and the device say; CuPy data
    runs on ``cuda``, NumPy data on ``cpu`` or, when the device resolves to the GPU, on
    ``cuda``. With ``numpy_when_small``, NumPy data holding fewer than ``SMALL_WORK``
    elements in all runs on ``reference`` instead, whatever the device: for kernels
    whose NumPy reference is vectorised (not those that loop in Python).
    """
    if backend is None:
        backend = device_of(*arrays)
        small = sum(getattr(a, "size", 0) for a in arrays) < SMALL_WORK
        on_host = not any(is_device_array(a) for a in arrays)
        # A model server's single row costs microseconds in NumPy and half a millisecond
        # on a GPU (transfers and a launch): small host data stays on the host.
        if numpy_when_small and small and on_host:
            backend = "reference"
    elif backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"kernels.{package}.{backend}")


def array_module(x: Any):
    """numpy for host arrays, cupy for device arrays."""
    if is_device_array(x):
        import cupy

        return cupy
    import numpy

    return numpy


def to_host(x: Any):
    """A NumPy copy of a NumPy or CuPy array."""
    return x.get() if is_device_array(x) else x
