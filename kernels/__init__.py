"""Falaj's numeric kernels.

Every kernel is one public function (or a scikit-learn style estimator) over arrays
with three implementations: a plain NumPy reference (the oracle the tests compare
against), a Numba CPU version and a CUDA version. Dispatch follows where the data
lives (NumPy -> CPU, CuPy -> GPU) and the device, ``auto``, ``cpu`` or ``cuda``:

    import kernels
    kernels.set_device("cpu")  # this process; takes precedence over FALAJ_DEVICE
    kernels.get_device()       # -> "cpu"
    kernels.set_device(None)   # FALAJ_DEVICE decides again (default: auto)

``set_device`` raises ValueError for any other value; asking for ``cuda`` where no GPU
answers raises ``DeviceUnavailable`` at the first kernel call. See ``kernels._backend``.
"""

from kernels._backend import DEVICES, DeviceUnavailable, get_device, set_device

__all__ = ["DEVICES", "DeviceUnavailable", "get_device", "set_device"]
