"""Plain NumPy training kernels: the oracle for ``cpu.py`` and ``cuda.py``.

Both kernels work on X augmented with a column of ones (the intercept, last) and return
host NumPy arrays: the terms a Newton / normal-equations solver needs, in one pass.
"""

from __future__ import annotations

import functools

import numpy as np


def weighted_gram(X: np.ndarray, w: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Xa^T diag(w) Xa, Xa^T r) with Xa = [X, 1]."""
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    return (Xa * w[:, None]).T @ Xa, Xa.T @ r


def logistic_terms(
    X: np.ndarray, y: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Hessian, gradient and value of the summed log loss at beta (no penalty).

    z = Xa beta, p = sigmoid(z): H = Xa^T diag(p(1-p)) Xa, grad = Xa^T (p - y),
    loss = sum(softplus(z) - y z).
    """
    z = X @ beta[:-1] + beta[-1]
    p = sigmoid(z)
    H, g = weighted_gram(X, p * (1.0 - p), p - y)
    loss = float(np.sum(np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z))) - y * z))
    return H, g, loss


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow for large |z|: SciPy's ``expit``, one ufunc
    (1 us for one row, where exp / abs / where took 12; 3x faster on 1M)."""
    return _expit()(z)


@functools.cache
def _expit():
    from scipy.special import expit  # imported when first needed: it takes 0.3 s

    return expit
