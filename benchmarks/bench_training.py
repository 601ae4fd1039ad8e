"""Training kernels against scikit-learn on the same data."""

from __future__ import annotations

import numpy as np

from benchmarks._harness import Case
from kernels.stats import roc_auc
from kernels.training import LogisticRegression, Ridge

N_COLS = 20


def cases(n_rows: int) -> list[Case]:
    from sklearn import linear_model as sk

    rng = np.random.default_rng(1)
    X = rng.normal(size=(n_rows, N_COLS)) * rng.uniform(0.5, 2.0, N_COLS)
    z = X @ (rng.normal(size=N_COLS) * 0.3) - 0.5
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-z))).astype(np.float64)
    y_reg = z + rng.normal(size=n_rows)
    auc: dict[str, float] = {}

    def ours():
        m = LogisticRegression(C=1.0).fit(X, y)
        auc["ours"] = roc_auc(y, m.decision_function(X))

    def lbfgs():
        m = sk.LogisticRegression(C=1.0).fit(X, y)
        auc["sklearn_lbfgs"] = roc_auc(y, m.decision_function(X))

    return [
        Case(
            "logistic_fit_x20",
            ours,
            rivals={"sklearn_lbfgs": lbfgs},
            bytes_moved=X.nbytes,
            target="no slower than sklearn lbfgs at equal AUC",
            target_vs="sklearn_lbfgs",
            repeat=2,
            note=lambda: f"AUC ours {auc['ours']:.6f} vs lbfgs {auc['sklearn_lbfgs']:.6f}",
        ),
        Case(
            "ridge_fit_x20",
            lambda: Ridge(alpha=1.0).fit(X, y_reg),
            rivals={"sklearn_ridge": lambda: sk.Ridge(alpha=1.0).fit(X, y_reg)},
            bytes_moved=X.nbytes,
        ),
    ]
