"""Categorical encoders over one column: one-hot, hashing, frequency and target encoding.

Categories are the distinct values of a 1-d array: integers and booleans (as int64),
floats (float64) or text (str). NaN and None are *missing*, never a category: they encode
as a row of zeros (one-hot, hashing), frequency 0, or the prior (target encoding), and are
never an "unknown category" error. Numeric columns run on the chosen backend; text has no
GPU form, so text lookups run in NumPy on the host whatever the backend.

Fits are ``CategorySummary -> state`` (``from_summary``), so they merge across partitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels._backend import array_module, select, to_host
from kernels.summary import CategorySummary, categories_from_json
from kernels.transforms import reference
from kernels.transforms._fit import Transformer, floats
from kernels.transforms._inputs import as_1d, check_fitted, host_or_device


def _categorical(values: Any, name: str = "values") -> tuple[Any, Any]:
    """(values as int64 / float64 / str, missing mask) for a 1-d column."""
    values = as_1d(values, name)
    xp = array_module(values)
    kind = values.dtype.kind
    if kind in "biu":
        return values.astype(xp.int64, copy=False), xp.zeros(len(values), dtype=bool)
    if kind == "f":
        values = values.astype(xp.float64, copy=False)
        return values, xp.isnan(values)
    if kind in "US":
        return values.astype(str), np.zeros(len(values), dtype=bool)
    if kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values])
        text = np.array(["" if m else str(v) for v, m in zip(values, missing, strict=True)])
        return text.astype(str), missing.astype(bool)
    raise ValueError(f"{name}: dtype {values.dtype} cannot hold categories")


def _module(backend: str | None, values: Any):
    return select("transforms", values, backend=backend, numpy_when_small=True)


def codes_for(values: Any, missing: Any, categories: np.ndarray, backend: str | None) -> Any:
    """Index of each value in the sorted ``categories``; -1 for unknown or missing."""
    numeric_values = values.dtype.kind in "if"
    numeric_categories = categories.dtype.kind in "if" or len(categories) == 0
    if numeric_values != numeric_categories:
        raise ValueError(
            f"fitted on {'numeric' if numeric_categories else 'text'} categories, "
            f"got {'numeric' if numeric_values else 'text'} values"
        )
    if not numeric_values:
        codes = reference.lookup_codes(values, categories.astype(str))
        return np.where(missing, -1, codes)
    module = _module(backend, values)
    if values.dtype != categories.dtype:  # int categories vs float values: compare as floats
        values, categories = values.astype(np.float64), categories.astype(np.float64)
    codes = module.lookup_codes(host_or_device(module, values), categories)
    xp = array_module(codes)
    missing = xp.asarray(missing)
    return xp.where(missing, -1, codes) if bool(missing.any()) else codes


def category_summary(
    values: Any, target: Any = None, backend: str | None = None
) -> CategorySummary:
    """Counts per category of ``values`` (and the sum of ``target`` per category)."""
    values, missing = _categorical(values)
    if target is not None:
        target = _check_target(target, len(values))
    kept = values[~missing]
    if values.dtype.kind in "if":
        module = _module(backend, values)
        categories = np.asarray(to_host(module.unique(host_or_device(module, kept))))
    else:
        module = _module("reference", values)
        categories = np.unique(kept)
    codes = codes_for(values, missing, categories, backend)
    weights = np.zeros(0) if target is None else target
    counts, sums = module.bincount(
        host_or_device(module, codes), host_or_device(module, weights), len(categories)
    )
    return CategorySummary(
        categories=categories,
        counts=np.asarray(to_host(counts), dtype=np.int64),
        n_missing=int(to_host(missing).sum()),
        target_sum=None if target is None else np.asarray(to_host(sums), dtype=np.float64),
    )


def _check_target(y: Any, n: int) -> Any:
    y = as_1d(y, "y")
    xp = array_module(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y must be numeric, got dtype {y.dtype}")
    y = y.astype(xp.float64)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} rows but the categories have {n}")
    if not bool(xp.isfinite(y).all()):
        raise ValueError("y contains NaN or infinity; target encoding needs a finite target")
    return y


def _nonempty(summary: CategorySummary, who: str) -> None:
    if summary.total == 0:
        raise ValueError(f"{who}: no non-missing values to learn categories from")


def _categories_to_json(categories: np.ndarray) -> list[Any]:
    return categories.tolist()


class OneHotEncoder(Transformer):
    """One 0/1 float64 column per fitted category, in sorted category order.

    ``handle_unknown="ignore"`` encodes an unseen category as a row of zeros; ``"error"``
    raises ValueError naming it. Missing values are always a row of zeros.
    """

    def __init__(self, handle_unknown: str = "ignore", backend: str | None = None) -> None:
        self.handle_unknown = handle_unknown
        self.backend = backend

    def fit(self, values: Any) -> OneHotEncoder:
        return self._fit_summary(category_summary(values, backend=self.backend))

    @classmethod
    def from_summary(
        cls, summary: CategorySummary, handle_unknown: str = "ignore", backend: str | None = None
    ) -> OneHotEncoder:
        return cls(handle_unknown, backend)._fit_summary(summary)

    def _fit_summary(self, summary: CategorySummary) -> OneHotEncoder:
        if self.handle_unknown not in ("ignore", "error"):
            raise ValueError(
                f"OneHotEncoder: handle_unknown must be 'ignore' or 'error', "
                f"got {self.handle_unknown!r}"
            )
        _nonempty(summary, "OneHotEncoder.fit")
        self.categories_ = summary.categories
        return self

    def transform(self, values: Any) -> Any:
        check_fitted(self, "categories_")
        values, missing = _categorical(values)
        codes = codes_for(values, missing, self.categories_, self.backend)
        if self.handle_unknown == "error":
            xp = array_module(codes)
            unknown = (codes < 0) & ~xp.asarray(missing)
            if bool(unknown.any()):
                seen = to_host(values[unknown])[:5].tolist()
                raise ValueError(
                    f"OneHotEncoder.transform: unknown categories {seen} (first 5 shown); "
                    "refit, or use handle_unknown='ignore' to encode them as all zeros"
                )
        module = _module(self.backend, codes)
        return module.one_hot(host_or_device(module, codes), len(self.categories_))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "categories_")
        return {
            "kind": "one_hot_encoder",
            "handle_unknown": self.handle_unknown,
            "categories": _categories_to_json(self.categories_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OneHotEncoder:
        self = cls(d["handle_unknown"])
        self.categories_ = categories_from_json(d["categories"])
        return self


class FrequencyEncoder(Transformer):
    """Each value becomes its category's share of the fitted non-missing rows.

    Unknown and missing values encode as 0.0.
    """

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    def fit(self, values: Any) -> FrequencyEncoder:
        return self._fit_summary(category_summary(values, backend=self.backend))

    @classmethod
    def from_summary(cls, summary: CategorySummary, backend: str | None = None) -> FrequencyEncoder:
        return cls(backend)._fit_summary(summary)

    def _fit_summary(self, summary: CategorySummary) -> FrequencyEncoder:
        _nonempty(summary, "FrequencyEncoder.fit")
        self.categories_ = summary.categories
        self.frequencies_ = summary.counts / summary.total
        return self

    def transform(self, values: Any) -> Any:
        check_fitted(self, "categories_")
        values, missing = _categorical(values)
        codes = codes_for(values, missing, self.categories_, self.backend)
        module = _module(self.backend, codes)
        return module.take(host_or_device(module, codes), self.frequencies_, 0.0)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "categories_")
        return {
            "kind": "frequency_encoder",
            "categories": _categories_to_json(self.categories_),
            "frequencies": floats(self.frequencies_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrequencyEncoder:
        self = cls()
        self.categories_ = categories_from_json(d["categories"])
        self.frequencies_ = np.asarray(d["frequencies"], dtype=np.float64)
        return self


class TargetEncoder:
    """Each category becomes its smoothed target mean.

    ``encoding = (count * mean + smooth * prior) / (count + smooth)``, where ``prior`` is
    the target mean over the fitted non-missing rows; this is scikit-learn's
    ``TargetEncoder(smooth=m, target_type="continuous")`` ``encodings_``. Unknown and missing
    values encode as the prior. ``fit`` does not cross-fit: encode training rows out of fold
    yourself if leakage matters. NaN or ±inf in the target is a ValueError.
    """

    def __init__(self, smooth: float = 10.0, backend: str | None = None) -> None:
        self.smooth = smooth
        self.backend = backend

    def fit(self, values: Any, y: Any) -> TargetEncoder:
        return self._fit_summary(category_summary(values, y, backend=self.backend))

    @classmethod
    def from_summary(
        cls, summary: CategorySummary, smooth: float = 10.0, backend: str | None = None
    ) -> TargetEncoder:
        return cls(smooth, backend)._fit_summary(summary)

    def _fit_summary(self, summary: CategorySummary) -> TargetEncoder:
        if not (np.isfinite(self.smooth) and self.smooth >= 0):
            raise ValueError(f"TargetEncoder: smooth must be finite and >= 0, got {self.smooth}")
        if summary.target_sum is None:
            raise ValueError("TargetEncoder: the summary has no target sums; pass y")
        _nonempty(summary, "TargetEncoder.fit")
        self.categories_ = summary.categories
        self.prior_ = float(summary.target_sum.sum() / summary.total)
        m = float(self.smooth)
        self.encodings_ = (summary.target_sum + m * self.prior_) / (summary.counts + m)
        return self

    def transform(self, values: Any) -> Any:
        check_fitted(self, "categories_")
        values, missing = _categorical(values)
        codes = codes_for(values, missing, self.categories_, self.backend)
        module = _module(self.backend, codes)
        return module.take(host_or_device(module, codes), self.encodings_, self.prior_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "categories_")
        return {
            "kind": "target_encoder",
            "smooth": float(self.smooth),
            "categories": _categories_to_json(self.categories_),
            "encodings": floats(self.encodings_),
            "prior": self.prior_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetEncoder:
        self = cls(d["smooth"])
        self.categories_ = categories_from_json(d["categories"])
        self.encodings_ = np.asarray(d["encodings"], dtype=np.float64)
        self.prior_ = float(d["prior"])
        return self


def hash_buckets(values: Any, n_buckets: int, seed: int = 0, backend: str | None = None) -> Any:
    """A stable bucket in [0, n_buckets) per value; -1 for missing.

    Stable across processes and machines (no salted ``hash()``): integers, and floats
    holding whole numbers, hash their int64 value (so 3 and 3.0 agree when a NaN turned an
    int column into floats) through splitmix64; other floats hash their float64 bits
    (-0.0 as 0.0); text hashes its UTF-8 bytes with FNV-1a 64.
    """
    if not isinstance(n_buckets, int | np.integer) or n_buckets < 1:
        raise ValueError(f"n_buckets must be an int >= 1, got {n_buckets!r}")
    values, missing = _categorical(values)
    if values.dtype.kind in "if":
        keys = _int_keys(values, missing)
        module = _module(backend, keys)
        out = module.hash_int64(host_or_device(module, keys), int(n_buckets), int(seed))
    else:
        data = np.char.encode(values, "utf-8")
        lengths = np.char.str_len(data).astype(np.int64)
        width = max(data.dtype.itemsize, 1)
        raw = np.ascontiguousarray(data.astype(f"S{width}")).view(np.uint8)
        module = _module(backend, raw)
        out = module.hash_bytes(raw.reshape(len(values), width), lengths, int(n_buckets), int(seed))
    xp = array_module(out)
    return xp.where(xp.asarray(missing), -1, out)


def _int_keys(values: Any, missing: Any) -> Any:
    """int64 keys: integers as they are; whole floats as their integer; else float bits."""
    xp = array_module(values)
    if values.dtype.kind == "i":
        return values
    v = xp.where(missing, 0.0, values) + 0.0  # + 0.0 turns -0.0 into 0.0
    whole = (v == xp.trunc(v)) & (xp.abs(v) < 2.0**63)
    as_int = xp.where(whole, v, 0.0).astype(xp.int64)
    return xp.ascontiguousarray(xp.where(whole, as_int, v.view(xp.int64)))


class HashingEncoder(Transformer):
    """One-hot over ``n_buckets`` stable hash buckets: no fitted vocabulary, no unknowns.

    Missing values give a row of zeros. ``fit`` only checks the parameters.
    """

    def __init__(self, n_buckets: int = 32, seed: int = 0, backend: str | None = None) -> None:
        self.n_buckets = n_buckets
        self.seed = seed
        self.backend = backend

    def fit(self, values: Any = None) -> HashingEncoder:
        if not isinstance(self.n_buckets, int | np.integer) or self.n_buckets < 1:
            raise ValueError(
                f"HashingEncoder: n_buckets must be an int >= 1, got {self.n_buckets!r}"
            )
        self.n_buckets_ = int(self.n_buckets)
        return self

    def transform(self, values: Any) -> Any:
        check_fitted(self, "n_buckets_")
        buckets = hash_buckets(values, self.n_buckets_, self.seed, self.backend)
        module = _module(self.backend, buckets)
        return module.one_hot(host_or_device(module, buckets), self.n_buckets_)

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "n_buckets_")
        return {"kind": "hashing_encoder", "n_buckets": self.n_buckets_, "seed": int(self.seed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HashingEncoder:
        return cls(int(d["n_buckets"]), int(d["seed"])).fit()


__all__ = [
    "FrequencyEncoder",
    "HashingEncoder",
    "OneHotEncoder",
    "TargetEncoder",
    "category_summary",
    "hash_buckets",
]
