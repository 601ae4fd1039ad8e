"""Fixtures for the kernel tests: a clean device setting, and dispatch without a GPU."""

import pytest

from kernels import _backend


@pytest.fixture(autouse=True)
def _device_from_the_environment(monkeypatch):
    # each test starts with no kernels.set_device choice (FALAJ_DEVICE, else auto), and
    # whatever it sets is undone after it
    monkeypatch.setattr(_backend, "_device", None)


@pytest.fixture
def no_gpu(monkeypatch):
    """Dispatch as on a machine without a usable GPU, also on one that has one."""
    monkeypatch.setattr(_backend, "_cupy", lambda: None)
