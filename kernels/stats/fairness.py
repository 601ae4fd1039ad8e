"""Per-group confusion counts and the fairness gaps fairlearn reports.

``group_counts`` is the kernel (one pass, integer counts); rates and differences are
computed from its small (groups, 4) table on the host, with fairlearn's definitions:
selection rate = mean prediction, TPR = TP / actual positives, FPR = FP / actual
negatives; ``demographic_parity_difference`` is the largest minus the smallest group
selection rate, ``equalized_odds_difference`` the larger of the TPR and FPR gaps
(fairlearn's ``method="between_groups", agg="worst_case"``). A rate whose denominator is
zero in a group is NaN (fairlearn warns and yields 0 there; we would rather not invent
a rate) and is left out of the differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, select, to_host
from kernels.stats._inputs import as_binary

COLUMNS = ("count", "predicted_positive", "actual_positive", "true_positive")


def group_counts(
    y_true: Any, y_pred: Any, groups: Any, *, backend: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(group labels, int64 counts shaped (n_groups, 4) in the order of ``COLUMNS``).

    ``groups`` holds non-negative integer codes (fast path: labels are 0..max code, and
    codes with no rows get zero counts) or any other labels (encoded with np.unique on
    the host first). y_true and y_pred are 0/1 or booleans.
    """
    yt = as_binary(y_true, "y_true", "group_counts")
    yp = as_binary(y_pred, "y_pred", "group_counts")
    xp = array_module(groups)
    g = xp.asarray(groups)
    if g.ndim != 1 or not (g.shape[0] == yt.shape[0] == yp.shape[0]):
        raise ValueError(
            f"group_counts: y_true {yt.shape}, y_pred {yp.shape} and groups {g.shape} "
            "must be 1-d and of the same length"
        )
    if g.dtype.kind in "iub":
        codes = g.astype(xp.int64)
        if codes.size and int(codes.min()) < 0:
            raise ValueError("group_counts: integer group codes must be >= 0")
        n_groups = int(codes.max()) + 1 if codes.size else 0
        labels = np.arange(n_groups)
    else:
        labels, inverse = np.unique(np.asarray(to_host(g)), return_inverse=True)
        codes, n_groups = xp.asarray(inverse.astype(np.int64)), labels.size
    impl = select("stats", yt, yp, codes, backend=backend)
    return labels, impl.group_counts(yt, yp, xp.ascontiguousarray(codes), n_groups)


def group_rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Selection rate, TPR and FPR per group from ``group_counts``' table."""
    c = np.asarray(counts, dtype=np.float64)
    n, pred_pos, pos, tp = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
    neg = n - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "selection_rate": np.where(n > 0, pred_pos / n, np.nan),
            "tpr": np.where(pos > 0, tp / pos, np.nan),
            "fpr": np.where(neg > 0, (pred_pos - tp) / neg, np.nan),
        }


def _spread(rate: np.ndarray) -> float:
    rate = rate[~np.isnan(rate)]
    return float(rate.max() - rate.min()) if rate.size else float("nan")


def demographic_parity_difference(counts: np.ndarray) -> float:
    return _spread(group_rates(counts)["selection_rate"])


def equalized_odds_difference(counts: np.ndarray) -> float:
    r = group_rates(counts)
    return max(_spread(r["tpr"]), _spread(r["fpr"]))
