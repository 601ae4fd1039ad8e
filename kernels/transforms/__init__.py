"""Feature transforms: fit on training data, apply identically in serving."""

from kernels.transforms.scaling import StandardScaler

__all__ = ["StandardScaler"]
