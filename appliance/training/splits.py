"""Hold-out and cross-validation splits as index arrays.

Every function returns int64 NumPy arrays of row positions and is deterministic: the
time split by construction, the others for a given seed. A label is "binary" when it
holds both 0 and 1 and nothing else; then every split keeps both classes on each side,
or says why not. A label of one value has nothing to stratify and gets a plain seeded
split (a binary task checks that it has both classes before it splits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance.errors import BadInput

Split = tuple[np.ndarray, np.ndarray]  # (train rows, held-out rows)


def _fraction(holdout_fraction: float) -> float:
    f = float(holdout_fraction)
    if not 0.0 < f < 1.0:
        raise BadInput(f"holdout_fraction must lie strictly between 0 and 1, got {f}")
    return f


def _labels(y: Any, where: str) -> np.ndarray:
    try:
        v = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: the label must be numeric") from None
    if v.ndim != 1:
        raise BadInput(f"{where}: the label must be 1-d, got shape {v.shape}")
    if np.isnan(v).any():
        raise BadInput(f"{where}: the label has {int(np.isnan(v).sum())} missing values")
    return v


def is_binary(y: np.ndarray) -> bool:
    """Both classes 0 and 1 present and nothing else."""
    return bool(np.isin(y, (0.0, 1.0)).all()) and 0 < int(y.sum()) < y.size


def _held_out(size: int, fraction: float) -> int:
    """Rows of ``size`` to hold out: the rounded share, at least one, leaving one."""
    return min(max(int(round(size * fraction)), 1), size - 1)


def time_split(times: Any, holdout_fraction: float) -> Split:
    """The latest ``holdout_fraction`` of rows by time is held out. Rows are ordered by
    time, equal times keep their input order (a stable sort), and both arrays come back
    in that order. Missing times (NaT, NaN) are refused: their place is unknown."""
    fraction = _fraction(holdout_fraction)
    t = np.asarray(times)
    if t.ndim != 1:
        raise BadInput(f"time split: times must be 1-d, got shape {t.shape}")
    if t.dtype.kind not in "Mmiuf":
        raise BadInput(f"time split: times must be datetimes or numbers, got {t.dtype}")
    missing = np.isnat(t) if t.dtype.kind in "Mm" else np.isnan(t.astype(np.float64))
    if missing.any():
        raise BadInput(f"time split: {int(missing.sum())} rows have no time; "
                       "drop or fill them first")  # fmt: skip
    if t.size < 2:
        raise BadInput(f"time split: needs at least 2 rows, got {t.size}")
    order = np.argsort(t, kind="stable").astype(np.int64)
    n_train = t.size - _held_out(t.size, fraction)
    return order[:n_train], order[n_train:]


def _strata(y: np.ndarray, bins: int = 10) -> np.ndarray:
    """Class for a binary label, else the label's quantile bin (up to ``bins``)."""
    if is_binary(y):
        return y.astype(np.int64)
    edges = np.unique(np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, y, side="right").astype(np.int64)


def stratified_split(y: Any, holdout_fraction: float, seed: int = 0) -> Split:
    """A seeded random hold-out with each stratum (class of a binary label, else quantile
    bin of the label) held out in proportion. Both arrays come back sorted."""
    fraction = _fraction(holdout_fraction)
    y = _labels(y, "stratified split")
    if y.size < 2:
        raise BadInput(f"stratified split: needs at least 2 rows, got {y.size}")
    binary = is_binary(y)
    if binary:
        sizes = np.bincount(y.astype(np.int64), minlength=2)
        if sizes.min() < 2:
            raise BadInput(
                f"stratified split: the binary label has {sizes[0]} rows of class 0 and "
                f"{sizes[1]} of class 1; each class needs 2 rows to appear on both sides"
            )
    rng = np.random.default_rng(seed)
    strata = _strata(y)
    held = []
    for s in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == s))
        # a stratum of one row goes to training unless the label is binary (refused above)
        k = _held_out(rows.size, fraction) if rows.size > 1 else 0
        held.append(rows[:k])
    test = np.sort(np.concatenate(held)).astype(np.int64)
    train = np.setdiff1d(np.arange(y.size, dtype=np.int64), test, assume_unique=True)
    if test.size == 0:
        raise BadInput(f"stratified split: {y.size} rows leave none to hold out")
    return train, test


def kfold(n: int, k: int, seed: int = 0, y: Any = None) -> list[Split]:
    """``k`` seeded folds of ``n`` rows as (train, valid) pairs, each array sorted; every
    row is validated exactly once. With a binary ``y`` the folds are stratified: each
    class is dealt round-robin, so every fold holds both classes."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise BadInput(f"kfold: k must be an integer of at least 2, got {k!r}")
    n = int(n)
    if n < k:
        raise BadInput(f"kfold: {n} rows are too few for {k} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    labels = None if y is None else _labels(y, "kfold")
    if labels is not None and labels.size != n:
        raise BadInput(f"kfold: y has {labels.size} rows, expected {n}")
    if labels is not None and is_binary(labels):
        offset = 0
        for c in (0, 1):
            rows = rng.permutation(np.flatnonzero(labels == c))
            if rows.size < k:
                raise BadInput(f"kfold: class {c} has {rows.size} rows, too few for "
                               f"{k} folds that each hold both classes")  # fmt: skip
            fold[rows] = (np.arange(rows.size) + offset) % k
            offset += rows.size
    else:
        fold[rng.permutation(n)] = np.arange(n) % k
    everything = np.arange(n, dtype=np.int64)
    return [(everything[fold != i], everything[fold == i]) for i in range(k)]
