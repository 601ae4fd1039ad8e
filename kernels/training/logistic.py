"""L2-regularised logistic regression by Newton's method (IRLS).

Minimises ``C * sum(log_loss) + 0.5 * ||coef||^2`` with an unpenalised intercept, the
objective scikit-learn's ``LogisticRegression(C=C)`` uses, so coefficients match. Each
Newton step is one pass over X by the ``logistic_terms`` kernel (Hessian, gradient and
loss together); the small (d+1) system is solved on the host. A step that does not lower
the objective is halved, so a fit from zero always converges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, select, to_host
from kernels.training._inputs import as_matrix, as_target
from kernels.training.reference import sigmoid


class LogisticRegression:
    def __init__(
        self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10, backend: str | None = None
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.backend = backend  # None: where X lives and the device decide

    def fit(self, X: Any, y: Any) -> LogisticRegression:
        X = as_matrix(X, "LogisticRegression.fit")
        y = as_target(y, X.shape[0], "LogisticRegression.fit")
        if X.shape[0] == 0:
            raise ValueError("LogisticRegression.fit: no rows")
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("LogisticRegression.fit: y must hold only 0 and 1")
        n_pos = float(y.sum())
        if n_pos in (0.0, float(X.shape[0])):
            raise ValueError("LogisticRegression.fit: y needs both classes (0 and 1)")
        if not self.C > 0:
            raise ValueError(f"LogisticRegression: C must be positive, got {self.C}")
        impl = select("training", X, backend=self.backend)
        d = X.shape[1]
        penalty = np.full(d + 1, 1.0 / self.C)
        penalty[-1] = 0.0  # the intercept is not penalised

        def objective(beta: np.ndarray):
            H, g, loss = impl.logistic_terms(X, y, beta)
            return H, g, loss + 0.5 * float(penalty @ beta**2)

        beta = np.zeros(d + 1)
        H, g, obj = objective(beta)
        self.n_iter_ = 0
        for it in range(1, self.max_iter + 1):
            grad = g + penalty * beta
            hess = H + np.diag(penalty)
            hess[np.diag_indices_from(hess)] += 1e-12
            step = np.linalg.solve(hess, grad)
            t = 1.0
            while True:
                trial = beta - t * step
                H2, g2, obj2 = objective(trial)
                # rounding can make a converged step look like a tiny increase
                if obj2 <= obj + 1e-12 * abs(obj) or t < 1e-6:
                    break
                t *= 0.5
            beta, H, g, obj = trial, H2, g2, obj2
            self.n_iter_ = it
            if np.max(np.abs(t * step)) < self.tol * max(1.0, np.max(np.abs(beta))):
                break
        self.coef_ = beta[:-1]
        self.intercept_ = float(beta[-1])
        return self

    def decision_function(self, X: Any):
        xp = array_module(X)
        X = xp.asarray(X, dtype=xp.float64)
        return X @ xp.asarray(self.coef_) + self.intercept_

    def predict_proba(self, X: Any):
        """P(y = 1) for each row (a 1-d array, unlike scikit-learn's two columns)."""
        z = self.decision_function(X)
        xp = array_module(z)
        return xp.asarray(sigmoid(to_host(z))) if xp is not np else sigmoid(z)

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
