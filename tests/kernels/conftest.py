"""Fixtures for the kernel tests."""

import pytest

from kernels import _backend


@pytest.fixture
def no_gpu(monkeypatch):
    """Dispatch as on a machine without a usable GPU, also on one that has one."""
    monkeypatch.setattr(_backend, "_cupy", lambda: None)
