"""Evaluation of a fitted model: metrics, the baseline it must beat, fairness across a
sensitive attribute, and robustness of its predictions to perturbed inputs.

Every value is a plain Python float, int, str or None, so a result goes into
metrics.json as it is. Degenerate cases give documented values, never NaN:

- ``roc_auc`` is None when the labels hold one class (the curve is undefined);
  ``pr_auc`` (average precision, as scikit-learn's ``average_precision_score``) is None
  when there are no positives;
- ``f1`` is 0.0 when there are neither actual nor predicted positives (scikit-learn's
  ``zero_division`` default);
- ``r2`` is 1.0 for a perfect fit of a constant target and 0.0 for an imperfect one
  (scikit-learn's ``force_finite``);
- a calibration bin without rows has ``mean_predicted`` and ``observed_rate`` None;
- in the fairness table a rate whose denominator is zero in a group (TPR without
  actual positives, FPR without actual negatives) is None and is left out of the
  differences, as in ``kernels.stats.fairness``. This is the one place we differ from
  fairlearn, which counts such a rate as 0 and so reports a gap that no data shows;
  when every group holds both classes the differences equal fairlearn's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from appliance.errors import BadInput
from kernels import stats

TASKS = ("binary", "regression")
MISSING_GROUP = "(missing)"
EPS = float(np.finfo(np.float64).eps)  # log loss clips here, as scikit-learn does since 1.5


def _task(task: str) -> str:
    if task not in TASKS:
        raise BadInput(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def _vector(a: Any, name: str, where: str) -> np.ndarray:
    try:
        v = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: {name} must be numeric") from None
    if v.ndim != 1 or v.size == 0:
        raise BadInput(f"{where}: {name} must be a non-empty 1-d array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise BadInput(f"{where}: {name} has {int((~np.isfinite(v)).sum())} non-finite values")
    return v


def _pair(y: Any, p: Any, where: str, *, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    yv, pv = _vector(y, "y", where), _vector(p, "predictions", where)
    if yv.shape != pv.shape:
        raise BadInput(f"{where}: y has {yv.size} rows but predictions {pv.size}")
    if binary:
        if not np.isin(yv, (0.0, 1.0)).all():
            raise BadInput(f"{where}: binary labels must be 0 or 1")
        if pv.min() < 0.0 or pv.max() > 1.0:
            raise BadInput(f"{where}: probabilities must lie in [0, 1]")
    return yv, pv


def _threshold(threshold: float) -> float:
    if not 0.0 < float(threshold) < 1.0:
        raise BadInput(f"threshold must lie strictly between 0 and 1, got {threshold}")
    return float(threshold)


def average_precision(y: np.ndarray, p: np.ndarray) -> float | None:
    """Sum over descending score thresholds of (recall step) x precision; None without
    positives. Equal to ``sklearn.metrics.average_precision_score``."""
    n_pos = y.sum()
    if n_pos == 0:
        return None
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), ps.size - 1]  # end of each tie group
    tps = np.cumsum(ys)[last]
    precision = tps / (last + 1)
    recall_step = np.diff(np.r_[0.0, tps]) / n_pos
    return float(np.sum(recall_step * precision))


def calibration_table(
    y: np.ndarray, p: np.ndarray, bins: int = 10
) -> tuple[list[dict[str, Any]], float]:
    """Equal-width bins over [0, 1] (each [lo, hi), the last one closed) and the expected
    calibration error: the row-weighted mean of |mean predicted - observed rate|."""
    if int(bins) < 1:
        raise BadInput(f"calibration_bins must be at least 1, got {bins}")
    bins = int(bins)
    ids = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(ids, minlength=bins)
    sum_p = np.bincount(ids, weights=p, minlength=bins)
    sum_y = np.bincount(ids, weights=y, minlength=bins)
    table, ece = [], 0.0
    for b in range(bins):
        n = int(count[b])
        mean_p = float(sum_p[b] / n) if n else None
        rate = float(sum_y[b] / n) if n else None
        if n:
            ece += n * abs(mean_p - rate)
        table.append({"bin": b, "lo": b / bins, "hi": (b + 1) / bins, "count": n,
                      "mean_predicted": mean_p, "observed_rate": rate})  # fmt: skip
    return table, float(ece / y.size)


def classification_metrics(
    y: Any, p: Any, threshold: float = 0.5, calibration_bins: int = 10
) -> dict[str, Any]:
    """Binary metrics of probabilities ``p`` against 0/1 labels ``y``; the decision is
    ``p >= threshold``."""
    y, p = _pair(y, p, "classification metrics", binary=True)
    threshold = _threshold(threshold)
    n_pos = int(y.sum())
    decided = p >= threshold
    tp = int(np.sum(decided & (y == 1)))
    f1_denominator = int(decided.sum()) + n_pos
    table, ece = calibration_table(y, p, calibration_bins)
    return {
        "rows": int(y.size),
        "roc_auc": stats.roc_auc(y, p) if 0 < n_pos < y.size else None,
        "pr_auc": average_precision(y, p),
        "log_loss": stats.log_loss(y, p, eps=EPS),
        "brier": float(np.mean((p - y) ** 2)),
        "accuracy": stats.accuracy(y, p, threshold),
        "f1": 2.0 * tp / f1_denominator if f1_denominator else 0.0,
        "threshold": threshold,
        "calibration": table,
        "ece": ece,
    }


def regression_metrics(y: Any, yhat: Any) -> dict[str, Any]:
    y, yhat = _pair(y, yhat, "regression metrics", binary=False)
    residual = y - yhat
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    # a constant target: 1 for a perfect fit, else 0 (scikit-learn's force_finite)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float(ss_res == 0)
    return {
        "rows": int(y.size),
        "rmse": float(np.sqrt(ss_res / y.size)),
        "mae": float(np.mean(np.abs(residual))),
        "r2": float(r2),
    }


def metrics(task: str, y: Any, p: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Hold-out metrics for ``task`` ("binary": with the calibration table)."""
    if _task(task) == "binary":
        return classification_metrics(y, p, threshold)
    return regression_metrics(y, p)


def train_metrics(task: str, y: Any, p: Any, threshold: float = 0.5) -> dict[str, Any]:
    """As ``metrics`` without the calibration table (ECE stays: it compares with the
    hold-out's)."""
    out = metrics(task, y, p, threshold)
    out.pop("calibration", None)
    return out


def baseline(task: str, y_train: Any, y_test: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics on the hold-out of the constant prediction a model must beat: the training
    prior of the positive class (binary) or the training mean (regression)."""
    _task(task)
    y_train = _vector(y_train, "y_train", "baseline")
    y_test = _vector(y_test, "y_test", "baseline")
    if task == "binary" and not np.isin(y_train, (0.0, 1.0)).all():
        raise BadInput("baseline: binary training labels must be 0 or 1")
    value = float(y_train.mean())
    constant = np.full(y_test.size, value)
    if task == "binary":
        return {"kind": "training prior", "prior": value} | classification_metrics(
            y_test, constant, threshold
        )
    return {"kind": "training mean", "mean": value} | regression_metrics(y_test, constant)


def _group_labels(groups: Any, n: int) -> np.ndarray:
    g = np.asarray(groups)
    if g.shape != (n,):
        raise BadInput(f"fairness: groups has shape {g.shape}, expected ({n},) like y")
    if g.dtype.kind == "f":
        missing = np.isnan(g)
    elif g.dtype.kind in "mM":
        missing = np.isnat(g)
    elif g.dtype.kind == "O":  # None, and NaN or NaT (the values unequal to themselves)
        missing = np.fromiter((v is None or v != v for v in g), dtype=bool, count=n)
    else:
        missing = np.zeros(n, dtype=bool)
    out = g.astype(str).astype(object)
    out[missing] = MISSING_GROUP
    return out


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def fairness(
    y: Any, p: Any, groups: Any, threshold: float = 0.5, sensitive: str | None = None
) -> dict[str, Any]:
    """Demographic parity and equalized odds differences of the decisions ``p >= threshold``
    across ``groups`` (fairlearn's ``method="between_groups"``), and a per-group table.

    Group values are shown as strings; None, NaN and NaT form the group "(missing)".
    """
    y, p = _pair(y, p, "fairness", binary=True)
    threshold = _threshold(threshold)
    labels = _group_labels(groups, y.size)
    decided = (p >= threshold).astype(np.uint8)
    names, counts = stats.group_counts(y.astype(np.uint8), decided, labels)
    rates = stats.group_rates(counts)
    table = []
    for i, name in enumerate(names):
        in_group = labels == name
        yg = y[in_group]
        both = 0 < yg.sum() < yg.size
        table.append({
            "group": str(name),
            "count": int(counts[i, 0]),
            "selection_rate": _finite_or_none(rates["selection_rate"][i]),
            "tpr": _finite_or_none(rates["tpr"][i]),
            "fpr": _finite_or_none(rates["fpr"][i]),
            "roc_auc": stats.roc_auc(yg, p[in_group]) if both else None,
        })  # fmt: skip
    return {
        "sensitive": sensitive,
        "demographic_parity_difference": _finite_or_none(
            stats.demographic_parity_difference(counts)
        ),
        "equalized_odds_difference": _finite_or_none(stats.equalized_odds_difference(counts)),
        "groups": table,
    }


# ---------------------------------------------------------------------------- robustness


ROLES = ("numeric", "categorical", "datetime")


def _missing_value(role: str) -> Any:
    return {"numeric": np.nan, "categorical": None, "datetime": np.datetime64("NaT")}[role]


def _change(
    base: np.ndarray, new: np.ndarray, task: str, threshold: float
) -> dict[str, float | None]:
    delta = np.abs(new - base)
    if task == "binary":
        flips = float(np.mean((base >= threshold) != (new >= threshold)))
    else:  # scale-free: changes in units of the spread of the unperturbed predictions
        spread = float(base.std())
        delta = delta / (spread if spread > 0 else 1.0)
        flips = None
    return {
        "mean_abs_change": float(delta.mean()),
        "max_abs_change": float(delta.max()),
        "flip_rate": flips,
    }


def robustness(
    predict: Callable[[dict[str, np.ndarray]], Any],
    columns: dict[str, np.ndarray],
    inputs: Sequence[Any],
    seed: int = 0,
    noise: float = 0.05,
    missing_rate: float = 0.1,
    *,
    task: str = "binary",
    threshold: float = 0.5,
    max_rows: int = 5000,
) -> dict[str, dict[str, float | None] | None]:
    """How much predictions move when the inputs are perturbed, on a seeded sample of at
    most ``max_rows`` rows of the raw ``columns`` (``inputs`` name them, each with its
    ``role``):

    - "noise": Gaussian noise of ``noise`` x the column's standard deviation added to
      every numeric input (None without numeric inputs);
    - "missing": ``missing_rate`` of each input's values set to missing (NaN, None, NaT);
    - "unseen": ``missing_rate`` of each categorical input's values replaced by categories
      never seen in training, "__unseen__<row>" (None without categorical inputs).

    Each gives the mean and largest absolute change of the predictions and, for "binary",
    the share of rows whose decision at ``threshold`` flips. For "regression" the changes
    are divided by the standard deviation of the unperturbed predictions (1 if they are
    constant), so thresholds do not depend on the target's unit, and flip_rate is None.
    """
    _task(task)
    if not 0.0 <= missing_rate <= 1.0 or noise < 0:
        raise BadInput(f"robustness: noise {noise} must be >= 0 and "
                       f"missing_rate {missing_rate} in [0, 1]")  # fmt: skip
    for spec in inputs:
        if spec.name not in columns:
            raise BadInput(f"robustness: input {spec.name!r} is not among the columns")
        if spec.role not in ROLES:
            raise BadInput(f"robustness: input {spec.name!r} has role {spec.role!r}, "
                           f"not one of {', '.join(ROLES)}")  # fmt: skip
    n = len(columns[inputs[0].name]) if inputs else 0
    if n == 0:
        raise BadInput("robustness: no inputs or no rows to perturb")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    sample = {name: np.asarray(col)[rows] for name, col in columns.items()}
    m = rows.size

    def run(what: str, perturbed: dict[str, np.ndarray]) -> np.ndarray:
        out = np.asarray(predict(perturbed), dtype=np.float64).ravel()
        if out.shape != (m,) or not np.isfinite(out).all():
            raise ValueError(f"robustness: predictions under {what} must be {m} finite values")
        return out

    base = run("no perturbation", sample)
    pick = max(0, min(m, int(round(missing_rate * m))))
    numeric = [s.name for s in inputs if s.role == "numeric"]
    categorical = [s.name for s in inputs if s.role == "categorical"]
    result: dict[str, dict[str, float | None] | None] = {}

    noisy = dict(sample)
    for name in numeric:
        col = sample[name].astype(np.float64)
        finite = col[np.isfinite(col)]
        std = float(finite.std()) if finite.size else 0.0
        noisy[name] = col + rng.normal(0.0, noise * std, size=m)
    result["noise"] = _change(base, run("noise", noisy), task, threshold) if numeric else None

    holes = dict(sample)
    for spec in inputs:
        col = sample[spec.name].copy()
        col[rng.choice(m, pick, replace=False)] = _missing_value(spec.role)
        holes[spec.name] = col
    result["missing"] = _change(base, run("missing values", holes), task, threshold)

    unseen = dict(sample)
    for name in categorical:
        col = sample[name].astype(object)
        at = rng.choice(m, pick, replace=False)
        col[at] = [f"__unseen__{i}" for i in at]
        unseen[name] = col
    result["unseen"] = (
        _change(base, run("unseen categories", unseen), task, threshold) if categorical else None
    )
    return result
