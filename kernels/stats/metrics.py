"""Evaluation metrics: ROC AUC (a kernel with three backends), accuracy and log loss."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import select
from kernels.stats._inputs import as_binary, as_float_1d


def roc_auc(y_true: Any, score: Any, *, backend: str | None = None) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic, ties counted half.

    y_true holds 0/1 or booleans and both classes; scores may be ±inf but not NaN.
    Equal to ``sklearn.metrics.roc_auc_score``.
    """
    y = as_binary(y_true, "y_true", "roc_auc")
    s = as_float_1d(score, "score", "roc_auc")
    if y.shape != s.shape:
        raise ValueError(f"roc_auc: y_true {y.shape} and score {s.shape} differ in length")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError("roc_auc: y_true needs both classes (0 and 1)")
    if bool(np.isnan(s).any()):
        raise ValueError("roc_auc: score contains NaN")
    return select("stats", y, s, backend=backend).roc_auc(y, s)


def accuracy(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> float:
    y = np.asarray(y_true).ravel().astype(bool)
    return float(np.mean((np.asarray(proba).ravel() >= threshold) == y))


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(proba, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
