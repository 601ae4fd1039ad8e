"""Ridge (L2) and ordinary least-squares linear regression from one pass over X.

The ``weighted_gram`` kernel gives X^T X, X^T y and the column sums in a single pass;
centring is then done algebraically on the small (d+1) matrices, so the intercept is
unpenalised and the solution is scikit-learn's ``Ridge(alpha)`` (which centres X and y).
``alpha=0`` (``LinearRegression``) takes the minimum-norm least-squares solution, as
scikit-learn does, so constant or collinear columns are fine. Centring after the fact
loses precision when a column's mean dwarfs its spread (more than ~1e6 times).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, select
from kernels.training._inputs import as_matrix, as_target


class Ridge:
    def __init__(self, alpha: float = 1.0, backend: str | None = None) -> None:
        self.alpha = alpha
        self.backend = backend  # None: where X lives and the device decide

    def fit(self, X: Any, y: Any) -> Ridge:
        name = type(self).__name__
        X = as_matrix(X, f"{name}.fit")
        y = as_target(y, X.shape[0], f"{name}.fit")
        n, d = X.shape
        if n == 0:
            raise ValueError(f"{name}.fit: no rows")
        if not self.alpha >= 0:
            raise ValueError(f"{name}: alpha must be >= 0, got {self.alpha}")
        impl = select("training", X, backend=self.backend)
        xp = array_module(X)
        G, g = impl.weighted_gram(X, xp.ones(n), y)
        sx, sy = G[:d, d], g[d]  # column sums of X and the sum of y
        A = G[:d, :d] - np.outer(sx, sx) / n
        b = g[:d] - sx * sy / n
        A[np.diag_indices_from(A)] += self.alpha
        coef = np.linalg.solve(A, b) if self.alpha > 0 else np.linalg.lstsq(A, b, rcond=None)[0]
        self.coef_ = coef
        self.intercept_ = float((sy - sx @ coef) / n)
        return self

    def predict(self, X: Any):
        xp = array_module(X)
        return xp.asarray(X, dtype=xp.float64) @ xp.asarray(self.coef_) + self.intercept_

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ridge",
            "alpha": self.alpha,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ridge:
        self = cls(alpha=float(d["alpha"]))
        self.coef_ = np.asarray(d["coef"], dtype=np.float64)
        self.intercept_ = float(d["intercept"])
        return self


class LinearRegression(Ridge):
    """Ordinary least squares: ``Ridge`` with ``alpha=0``."""

    def __init__(self, backend: str | None = None) -> None:
        super().__init__(alpha=0.0, backend=backend)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearRegression:
        self = cls()
        self.coef_ = np.asarray(d["coef"], dtype=np.float64)
        self.intercept_ = float(d["intercept"])
        return self
