"""L2-regularised logistic regression. NumPy reference (Newton's method) for now.

Minimises ``C * sum(log_loss) + 0.5 * ||coef||^2`` with an unpenalised intercept,
the objective scikit-learn's ``LogisticRegression(C=C)`` uses, so coefficients match.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LogisticRegression:
    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticRegression:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X {X.shape} and y {y.shape} do not match")
        if X.shape[0] == 0:
            raise ValueError("LogisticRegression.fit: no rows")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("LogisticRegression.fit: y must hold only 0 and 1")
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")
        n, d = X.shape
        Xb = np.hstack([X, np.ones((n, 1))])
        w = np.zeros(d + 1)
        penalty = np.full(d + 1, 1.0 / self.C)
        penalty[-1] = 0.0  # the intercept is not penalised
        self.n_iter_ = 0
        for it in range(1, self.max_iter + 1):
            p = _sigmoid(Xb @ w)
            grad = Xb.T @ (p - y) + penalty * w
            hess = (Xb * (p * (1 - p))[:, None]).T @ Xb + np.diag(penalty)
            hess[np.diag_indices_from(hess)] += 1e-12
            step = np.linalg.solve(hess, grad)
            w -= step
            self.n_iter_ = it
            if np.max(np.abs(step)) < self.tol * max(1.0, np.max(np.abs(w))):
                break
        self.coef_ = w[:-1]
        self.intercept_ = float(w[-1])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1) for each row (a 1-d array, unlike scikit-learn's two columns)."""
        return _sigmoid(self.decision_function(X))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "logistic_regression",
            "C": self.C,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticRegression:
        self = cls(C=float(d["C"]))
        self.coef_ = np.asarray(d["coef"], dtype=np.float64)
        self.intercept_ = float(d["intercept"])
        return self


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |z|
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out
