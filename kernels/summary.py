"""Mergeable statistics that fitted transforms are built from.

A fit is ``data -> summary -> state``. Summaries of separate partitions merge exactly
(up to float rounding), so a fit can run in pieces: per file, per day, per worker, and
the merged summary gives the same state as a fit over the whole data.

Both summaries are small and JSON-able via ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ColumnSummary:
    """Per-column moments of a 2-d float array; NaN counts as missing.

    ``m2`` is the sum of squared deviations from the column mean (not the raw sum of
    squares): raw sums of squares cancel catastrophically for columns far from zero, while
    ``m2`` merges exactly with Chan's formula. Columns without observed values have
    ``min = max = NaN`` and ``sum = m2 = 0``. ±inf is an observed value: it shows in
    ``min``/``max`` and makes ``sum``/``m2`` non-finite.
    """

    count: np.ndarray  # int64, observed (non-NaN) values per column
    nan_count: np.ndarray  # int64
    sum: np.ndarray  # float64
    m2: np.ndarray  # float64, sum of (x - mean)^2 over observed values
    min: np.ndarray  # float64
    max: np.ndarray  # float64

    @classmethod
    def from_array(cls, X: Any, backend: str | None = None) -> ColumnSummary:
        """Summarise the columns of ``X`` (1-d counts as one column)."""
        from kernels._backend import select, to_host
        from kernels.transforms._inputs import as_2d_float  # here: transforms imports this module

        X = as_2d_float(X, "X")
        module = select("transforms", X, backend=backend, numpy_when_small=True)
        parts = module.column_summary(X)
        count, nan_count, total, m2, lo, hi = (np.asarray(to_host(p)) for p in parts)
        empty = count == 0
        return cls(
            count=count.astype(np.int64),
            nan_count=nan_count.astype(np.int64),
            sum=np.where(empty, 0.0, total),
            m2=np.where(empty, 0.0, m2),
            min=np.where(empty, np.nan, lo),
            max=np.where(empty, np.nan, hi),
        )

    @property
    def n_columns(self) -> int:
        return int(self.count.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.count[0] + self.nan_count[0]) if self.n_columns else 0

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)

    @property
    def var(self) -> np.ndarray:
        """Population variance of the observed values (NaN for empty columns)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan)

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        if self.n_columns != other.n_columns:
            raise ValueError(
                f"ColumnSummary.merge: {self.n_columns} columns vs {other.n_columns}; "
                "summaries must describe the same columns"
            )
        n_a, n_b = self.count.astype(np.float64), other.count.astype(np.float64)
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.mean - self.mean
            m2 = self.m2 + other.m2 + delta * delta * (n_a * n_b / np.maximum(n, 1))
        # Chan's correction is only defined when both sides saw values.
        m2 = np.where(n_a == 0, other.m2, np.where(n_b == 0, self.m2, m2))
        return ColumnSummary(
            count=self.count + other.count,
            nan_count=self.nan_count + other.nan_count,
            sum=self.sum + other.sum,
            m2=m2,
            min=np.fmin(self.min, other.min),
            max=np.fmax(self.max, other.max),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "column_summary",
            **{k: _jsonable(getattr(self, k)) for k in _COLUMN_FIELDS},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnSummary:
        return cls(
            count=np.asarray(d["count"], dtype=np.int64),
            nan_count=np.asarray(d["nan_count"], dtype=np.int64),
            **{k: _from_json(d[k]) for k in ("sum", "m2", "min", "max")},
        )


_COLUMN_FIELDS = ("count", "nan_count", "sum", "m2", "min", "max")


@dataclass
class CategorySummary:
    """Counts (and optional target sums) per category of one column.

    ``categories`` is sorted and holds no missing values; ``n_missing`` counts the NaN /
    None entries that were left out. ``target_sum`` is the sum of a target per category,
    present when the summary was built with a target (target encoding needs it).
    """

    categories: np.ndarray
    counts: np.ndarray  # int64
    n_missing: int = 0
    target_sum: np.ndarray | None = None  # float64

    @classmethod
    def from_values(
        cls, values: Any, target: Any = None, backend: str | None = None
    ) -> CategorySummary:
        from kernels.transforms.encoding import category_summary

        return category_summary(values, target, backend=backend)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: CategorySummary) -> CategorySummary:
        if (self.target_sum is None) != (other.target_sum is None):
            raise ValueError("CategorySummary.merge: only one side has target sums")
        if len(self.categories) and len(other.categories):
            categories = np.union1d(self.categories, other.categories)
        else:
            categories = self.categories if len(self.categories) else other.categories
        counts = np.zeros(len(categories), dtype=np.int64)
        sums = None if self.target_sum is None else np.zeros(len(categories))
        for part in (self, other):
            at = np.searchsorted(categories, part.categories)
            counts[at] += part.counts
            if sums is not None:
                sums[at] += part.target_sum
        return CategorySummary(categories, counts, self.n_missing + other.n_missing, sums)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": "category_summary",
            "categories": _jsonable(self.categories),
            "counts": self.counts.tolist(),
            "n_missing": int(self.n_missing),
        }
        if self.target_sum is not None:
            d["target_sum"] = _jsonable(self.target_sum)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategorySummary:
        sums = d.get("target_sum")
        return cls(
            categories=categories_from_json(d["categories"]),
            counts=np.asarray(d["counts"], dtype=np.int64),
            n_missing=int(d.get("n_missing", 0)),
            target_sum=None if sums is None else _from_json(sums),
        )


def _jsonable(a: np.ndarray) -> list[Any]:
    """A list JSON can hold: non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if a.dtype.kind == "f":
        return [float(v) if np.isfinite(v) else str(float(v)) for v in a.tolist()]
    return a.tolist()


def _from_json(values: list[Any]) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=np.float64)


def categories_from_json(values: list[Any]) -> np.ndarray:
    """Categories back from JSON: ints stay int64, floats float64, text str."""
    if all(isinstance(v, bool | int) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, float | int) for v in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=str)
