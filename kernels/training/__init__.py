"""Training steps: L2-regularised linear and logistic regression.

The one-pass kernels live in ``reference.py`` / ``cpu.py`` / ``cuda.py`` (identical
signatures); the estimators validate input, pick a backend and solve the small system.
"""

from kernels.training.logistic import LogisticRegression
from kernels.training.ridge import LinearRegression, Ridge

__all__ = ["LinearRegression", "LogisticRegression", "Ridge"]
