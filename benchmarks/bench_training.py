"""Training kernels against scikit-learn on the same data; with a GPU, the CUDA path on
CuPy data against our CPU path."""

from __future__ import annotations

import numpy as np

from benchmarks._harness import Case
from kernels._backend import gpu_available
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

    out = [
        Case(
            "logistic_fit_x20",
            ours,
            rivals={"sklearn_lbfgs": lbfgs},
            bytes_moved=X.nbytes,
            target="1M x 20: no slower than sklearn lbfgs at equal AUC"
            if n_rows >= 1_000_000
            else "",
            target_vs={"sklearn_lbfgs": 1.0} if n_rows >= 1_000_000 else None,
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
    if n_rows <= SMALL_CASES_UP_TO:
        out += _serving_cases(X, y)
    if gpu_available():
        out += _gpu_cases(X, y, y_reg)
    return out


SMALL_CASES_UP_TO = 1_000_000  # the per-request cases do not depend on n_rows: run them once


def _serving_cases(X: np.ndarray, y: np.ndarray) -> list[Case]:
    """What the model server does per request: score 1 to 1,000 rows (no thread pool)."""
    from sklearn import linear_model as sk

    X8, y8 = X[:2000, :8].copy(), y[:2000]
    ours = LogisticRegression().fit(X8, y8)
    theirs = sk.LogisticRegression().fit(X8, y8)
    one, batch = X8[:1].copy(), X8[:1000].copy()
    return [
        Case(
            "predict_proba_1x8",
            lambda: ours.predict_proba(one),
            rivals={"sklearn": lambda: theirs.predict_proba(one)},
            target="< 50 us after warm-up",
            target_s=50e-6,
            repeat=200,
        ),
        Case(
            "predict_proba_1000x8",
            lambda: ours.predict_proba(batch),
            rivals={"sklearn": lambda: theirs.predict_proba(batch)},
            repeat=100,
        ),
        Case(
            "logistic_fit_1000x8",
            lambda: LogisticRegression().fit(batch, y8[:1000]),
            rivals={"sklearn_lbfgs": lambda: sk.LogisticRegression().fit(batch, y8[:1000])},
            repeat=20,
        ),
    ]


def _gpu_cases(X: np.ndarray, y: np.ndarray, y_reg: np.ndarray) -> list[Case]:
    """Fits on CuPy data (the CUDA kernels) against the same fits on the CPU path."""
    import cupy

    dX, dy, dy_reg = (cupy.asarray(a) for a in (X, y, y_reg))
    coef: dict[str, np.ndarray] = {}

    def logistic_gpu():
        coef["cuda"] = LogisticRegression(C=1.0).fit(dX, dy).coef_
        cupy.cuda.Device().synchronize()

    def logistic_cpu():
        coef["cpu"] = LogisticRegression(C=1.0, backend="cpu").fit(X, y).coef_

    def ridge_gpu():
        Ridge(alpha=1.0).fit(dX, dy_reg)
        cupy.cuda.Device().synchronize()

    def agreement() -> str:
        err = np.max(np.abs(coef["cuda"] - coef["cpu"])) / max(1.0, np.max(np.abs(coef["cpu"])))
        return f"coef rel. diff cuda vs cpu {err:.1e}"

    return [
        Case(
            "logistic_fit_x20[cuda]",
            logistic_gpu,
            rivals={"cpu": logistic_cpu},
            bytes_moved=X.nbytes,
            device="cuda",
            repeat=2,
            note=agreement,
        ),
        Case(
            "ridge_fit_x20[cuda]",
            ridge_gpu,
            rivals={"cpu": lambda: Ridge(alpha=1.0, backend="cpu").fit(X, y_reg)},
            bytes_moved=X.nbytes,
            device="cuda",
        ),
    ]
