"""Device selection and dispatch in kernels._backend: set_device, FALAJ_DEVICE, the CPU
fallback and its errors, and select (the one dispatcher of every kernel package)."""

import logging

import numpy as np
import pytest

import kernels
from kernels import _backend


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    # detection and the fallback notice are cached per process; each test starts clean
    _backend._cupy.cache_clear()
    _backend._announce_fallback.cache_clear()
    monkeypatch.setattr(_backend, "_cupy", _no_gpu)
    yield
    _backend._announce_fallback.cache_clear()


def _no_gpu():
    return None


def test_auto_falls_back_to_cpu_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setenv("FALAJ_DEVICE", "auto")
    with caplog.at_level(logging.INFO, logger="falaj.kernels"):
        assert _backend.resolve_device() == "cpu"
        assert _backend.device_of(np.zeros(3)) == "cpu"
        assert _backend.resolve_device() == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.name == "falaj.kernels"]
    assert len(lines) == 1
    assert "kernels run on the CPU" in lines[0]


def test_default_is_auto(monkeypatch):
    monkeypatch.delenv("FALAJ_DEVICE", raising=False)
    assert _backend.get_device() == "auto"
    assert _backend.resolve_device() == "cpu"


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "cuda")
    with pytest.raises(
        _backend.DeviceUnavailable, match="no usable CUDA GPU.*set FALAJ_DEVICE to auto or cpu"
    ):
        _backend.resolve_device()
    with pytest.raises(_backend.DeviceUnavailable):
        _backend.device_of(np.zeros(3))


def test_cpu_never_probes_the_gpu(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", " CPU ")

    def boom():
        raise AssertionError("probed the GPU")

    monkeypatch.setattr(_backend, "_cupy", boom)
    assert _backend.resolve_device() == "cpu"


def test_invalid_value_raises(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "tpu")
    with pytest.raises(ValueError, match="FALAJ_DEVICE='tpu' is not one of auto, cpu, cuda"):
        _backend.resolve_device()


def test_gpu_when_detected(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "auto")
    monkeypatch.setattr(_backend, "_cupy", lambda: object())
    assert _backend.resolve_device() == "cuda"


def test_simulator_is_not_a_gpu(monkeypatch):
    monkeypatch.undo()  # the real detector, with the simulator switched on
    _backend._cupy.cache_clear()
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert _backend.gpu_available() is False
    _backend._cupy.cache_clear()


def test_host_arrays_stay_on_the_host():
    x = np.arange(3.0)
    assert _backend.is_device_array(x) is False
    assert _backend.array_module(x) is np
    assert _backend.to_host(x) is x


class FakeDeviceArray:
    __module__ = "cupy._core.core"


def test_device_arrays_run_on_the_gpu(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "cpu")
    assert _backend.is_device_array(FakeDeviceArray())
    assert _backend.device_of(np.zeros(1), FakeDeviceArray()) == "cuda"


# -- set_device: the appliance's `device` setting ---------------------------------------------


def test_set_device_takes_precedence_over_the_environment(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "cuda")
    kernels.set_device("cpu")
    assert kernels.get_device() == "cpu"
    assert _backend.resolve_device() == "cpu"  # no DeviceUnavailable: cuda is not asked for
    kernels.set_device(None)  # the environment decides again
    assert kernels.get_device() == "cuda"
    with pytest.raises(_backend.DeviceUnavailable):
        _backend.resolve_device()


def test_set_device_ignores_case_and_spaces():
    kernels.set_device(" CUDA ")
    assert kernels.get_device() == "cuda"


@pytest.mark.parametrize("bad", ["gpu", "", "cuda:0", "auto,cpu", 1])
def test_set_device_rejects_other_values_and_keeps_the_last_good_one(bad):
    kernels.set_device("cpu")
    with pytest.raises(ValueError, match=r"device=.* is not one of auto, cpu, cuda"):
        kernels.set_device(bad)
    assert kernels.get_device() == "cpu"


def test_cuda_set_without_gpu_names_the_setting():
    kernels.set_device("cuda")
    with pytest.raises(
        _backend.DeviceUnavailable, match="device setting.*no usable CUDA GPU.*to auto or cpu"
    ):
        _backend.device_of(np.zeros(3))


def test_the_setting_reaches_every_kernel_package(monkeypatch):
    monkeypatch.setattr(_backend, "_cupy", lambda: object())  # a GPU answers
    big = np.zeros(_backend.SMALL_WORK)
    for package in ("stats", "training", "transforms"):
        kernels.set_device("cpu")
        assert _backend.select(package, big).__name__ == f"kernels.{package}.cpu"
        kernels.set_device("auto")
        assert _backend.select(package, big).__name__ == f"kernels.{package}.cuda"


# -- select: the dispatcher ------------------------------------------------------------------


def test_select_follows_where_the_data_lives(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "cpu")
    big, small = np.zeros(_backend.SMALL_WORK), np.zeros(_backend.SMALL_WORK - 1)
    assert _backend.select("stats", big).__name__ == "kernels.stats.cpu"
    assert _backend.select("stats", small).__name__ == "kernels.stats.cpu"  # no shortcut asked
    assert _backend.select("stats", FakeDeviceArray()).__name__ == "kernels.stats.cuda"


def test_select_small_numpy_inputs_take_the_numpy_path_when_asked(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "auto")  # no GPU here (the autouse fixture)
    half = np.zeros(_backend.SMALL_WORK // 2)

    def chosen(*arrays):
        return _backend.select("transforms", *arrays, numpy_when_small=True).__name__

    assert chosen(half) == "kernels.transforms.reference"
    assert chosen(half, half) == "kernels.transforms.cpu"  # all inputs count
    assert chosen(np.zeros(0)) == "kernels.transforms.reference"
    # device data stays on the device, however small
    assert chosen(FakeDeviceArray()) == "kernels.transforms.cuda"


def test_select_explicit_backends_and_bad_names(monkeypatch):
    monkeypatch.setenv("FALAJ_DEVICE", "cuda")  # not consulted: the backend is given
    for backend in _backend.BACKENDS:
        module = _backend.select("training", np.zeros(3), backend=backend)
        assert module.__name__ == f"kernels.training.{backend}"
    with pytest.raises(ValueError, match="backend='gpu' is not one of reference, cpu, cuda"):
        _backend.select("stats", np.zeros(3), backend="gpu")


def test_small_host_data_stays_on_the_host_even_when_a_gpu_is_there(monkeypatch):
    """A model server's one-row request must not pay a GPU round trip (half a
    millisecond on an H200, against microseconds in NumPy)."""
    monkeypatch.setattr(_backend, "gpu_available", lambda: True)
    monkeypatch.setattr(_backend, "_device", "auto")
    one_row = np.ones((1, 8))
    assert _backend.device_of(one_row) == "cuda"  # the device resolves to the GPU...
    small = _backend.select("transforms", one_row, numpy_when_small=True)
    assert small.__name__ == "kernels.transforms.reference"  # ...yet this stays on the host
    big = np.ones((_backend.SMALL_WORK, 2))
    assert _backend.select("transforms", big, numpy_when_small=True).__name__.endswith(".cuda")
    assert _backend.select("stats", one_row).__name__.endswith(".cuda")  # no shortcut asked
