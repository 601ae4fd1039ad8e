"""The fitted pipeline: raw input columns in, one finite float64 matrix out.

Training fits it once; the bundle stores it as JSON (``pipeline.json``); serving applies the
same kernel transforms to request records. Columns are a dict ``name -> 1-d array``:
numeric float64 (NaN missing), categorical object arrays of ``str`` / ``None``, datetime
``datetime64[us]`` (NaT missing).

Steps, in output order (feature names in brackets):

- numeric inputs, together: mean imputation, standard scaling clipped to ``±CLIP``
  (``age``), then a 0/1 indicator per input that had missing values in training
  (``age__missing``). ±inf in ``columns`` counts as missing.
- each categorical input, by its number of distinct training values: up to ``ONE_HOT_MAX``
  one-hot (``region=north``; unseen and missing: all zeros); up to ``TARGET_MAX``, or with
  ``TARGET_ROWS`` training rows a category or more on average, a standardised smoothed
  target mean (``city__target``; unseen and missing: the prior) and the category's
  training share (``city__frequency``; unseen and missing: 0); beyond that, or when fitted
  without a target, ``HASH_BUCKETS`` stable hash buckets (``zip__hash_7``) and the share.
  Training rows get their target encoding out of fold (``TARGET_FOLDS`` seeded folds), so
  no row sees its own label.
- datetime inputs, together: the parts in ``DATETIME_PARTS`` (``opened__month``), imputed
  with their training means and standardised, then a 0/1 indicator per input that had
  missing values in training (``opened__missing``).

``transform`` output is always finite. Up to ``FAST_ROWS`` rows (a model server's
requests) it applies the same fitted state without the kernels' per-call dispatch, with
the same arithmetic, so both paths give the same matrix bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.errors import BadInput
from kernels.summary import CategorySummary
from kernels.transforms import (
    DATETIME_PARTS,
    FrequencyEncoder,
    HashingEncoder,
    OneHotEncoder,
    SimpleImputer,
    StandardScaler,
    TargetEncoder,
    datetime_parts,
)

FORMAT = 1
ROLES = ("numeric", "categorical", "datetime")
TYPES = {"numeric": "double", "categorical": "string", "datetime": "datetime"}
TASKS = ("binary", "regression")
ONE_HOT_MAX = 16  # distinct training values up to which a categorical input is one-hot
TARGET_MAX = 1000  # ... up to which it is target + frequency encoded; hashed beyond
TARGET_ROWS = 100  # ... unless each category has this many rows on average: then target
HASH_BUCKETS = 32
TARGET_FOLDS = 5
TARGET_SMOOTH = 10.0
CLIP = 1e6  # standardised numeric values are clipped here, so outliers stay finite
# Up to this many rows, ``transform`` skips the kernels' validation and dispatch (most of
# a single request's cost) and applies the fitted state with dict lookups and the same
# float arithmetic in Python; tests check that both paths give the same matrix, bit for bit.
FAST_ROWS = 64
NAT = np.iinfo(np.int64).min  # datetime64's NaT, as int64 microseconds


@dataclass(frozen=True)
class Input:
    """One raw model input and its role; ``type`` is its JSON type when served."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise BadInput(
                f"input {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}"
            )

    @property
    def type(self) -> str:
        return TYPES[self.role]


# ---------------------------------------------------------------- steps


def _stack_numeric(columns: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    X = np.empty((len(columns[names[0]]), len(names)))
    for j, name in enumerate(names):
        X[:, j] = columns[name]
    X[np.isinf(X)] = np.nan  # ±inf is no measurement: imputed like a null
    return X


def _fit_scaler(X: np.ndarray, names: list[str]) -> StandardScaler:
    try:
        return StandardScaler().fit(X)
    except ValueError as exc:
        raise BadInput(f"inputs {', '.join(names)}: cannot be standardised: {exc}") from None


def _check_observed(X: np.ndarray, names: list[str]) -> None:
    empty = np.flatnonzero(np.isnan(X).all(axis=0))
    if len(empty):
        raise BadInput(
            f"input {names[empty[0]]!r} has no values in the training rows; "
            "exclude it or give it the role 'ignore'"
        )


class _Numeric:
    kind = "numeric"

    def __init__(self, columns: list[str], imputer: SimpleImputer, scaler: StandardScaler):
        self.columns, self.imputer, self.scaler = columns, imputer, scaler
        self.names = columns + [f"{columns[j]}__missing" for j in imputer.missing_features_]

    @classmethod
    def fit(cls, columns: dict[str, np.ndarray], names: list[str]) -> _Numeric:
        X = _stack_numeric(columns, names)
        _check_observed(X, names)
        imputer = SimpleImputer("mean", add_indicator=True).fit(X)
        scaler = _fit_scaler(imputer.transform(X)[:, : len(names)], names)
        return cls(names, imputer, scaler)

    def transform(self, columns: dict[str, np.ndarray], y: Any = None, seed: int = 0):
        out = self.imputer.transform(_stack_numeric(columns, self.columns))
        k = len(self.columns)
        out[:, :k] = np.clip(self.scaler.transform(out[:, :k]), -CLIP, CLIP)
        return out

    @cached_property
    def _plan(self) -> list[tuple[str, float, float, float, int | None]]:
        """Per column: (name, fill, mean, scale, offset of its indicator or None)."""
        k = len(self.columns)
        indicator = {int(j): k + i for i, j in enumerate(self.imputer.missing_features_)}
        fill, mean, scale = (a.tolist() for a in (self.imputer.statistics_,
                             self.scaler.mean_, self.scaler.scale_))  # fmt: skip
        return [
            (c, fill[j], mean[j], scale[j], indicator.get(j)) for j, c in enumerate(self.columns)
        ]

    def fast(self, columns: dict[str, np.ndarray], rows: list[list[float]], at: int) -> None:
        for j, (name, fill, mean, scale, indicator) in enumerate(self._plan):
            for row, x in zip(rows, columns[name].tolist(), strict=True):
                if not math.isfinite(x):
                    x = fill
                    if indicator is not None:
                        row[at + indicator] = 1.0
                z = (x - mean) / scale
                row[at + j] = -CLIP if z < -CLIP else CLIP if z > CLIP else z

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "clip": CLIP,
                "imputer": self.imputer.to_dict(), "scaler": self.scaler.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Numeric:
        imputer, scaler = (
            SimpleImputer.from_dict(d["imputer"]),
            StandardScaler.from_dict(d["scaler"]),
        )
        return cls(list(d["columns"]), imputer, scaler)


def _parts(columns: dict[str, np.ndarray], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(date parts as float64 with NaN where missing, (n, len(names)) missing mask)."""
    n, p = len(columns[names[0]]), len(DATETIME_PARTS)
    X = np.empty((n, p * len(names)))
    missing = np.empty((n, len(names)), dtype=bool)
    for j, name in enumerate(names):
        t = columns[name]
        missing[:, j] = np.isnat(t)
        X[:, j * p : (j + 1) * p] = datetime_parts(t, unit="us")
        X[missing[:, j], j * p : (j + 1) * p] = np.nan
    return X, missing


class _Datetime:
    kind = "datetime"

    def __init__(self, columns: list[str], imputer: SimpleImputer, scaler: StandardScaler,
                 indicators: list[int]):  # fmt: skip
        self.columns, self.imputer, self.scaler = columns, imputer, scaler
        self.indicators = indicators
        self.names = [f"{c}__{part}" for c in columns for part in DATETIME_PARTS] + [
            f"{columns[j]}__missing" for j in indicators
        ]

    @classmethod
    def fit(cls, columns: dict[str, np.ndarray], names: list[str]) -> _Datetime:
        X, missing = _parts(columns, names)
        _check_observed(X[:, :: len(DATETIME_PARTS)], names)
        imputer = SimpleImputer("mean").fit(X)
        scaler = _fit_scaler(imputer.transform(X), names)
        return cls(names, imputer, scaler, np.flatnonzero(missing.any(axis=0)).tolist())

    def transform(self, columns: dict[str, np.ndarray], y: Any = None, seed: int = 0):
        X, missing = _parts(columns, self.columns)
        scaled = self.scaler.transform(self.imputer.transform(X))
        return np.hstack([scaled, missing[:, self.indicators].astype(np.float64)])

    @cached_property
    def _plan(self) -> tuple[list[float], list[float], dict[int, int]]:
        """(parts scaled at their fill value, (mean, scale) per part, indicator offsets)."""
        fill, mean, scale = (a.tolist() for a in (self.imputer.statistics_,
                             self.scaler.mean_, self.scaler.scale_))  # fmt: skip
        filled = [(f - m) / s for f, m, s in zip(fill, mean, scale, strict=True)]
        base = len(DATETIME_PARTS) * len(self.columns)
        return (
            filled,
            list(zip(mean, scale, strict=True)),
            {j: base + i for i, j in enumerate(self.indicators)},
        )

    def fast(self, columns: dict[str, np.ndarray], rows: list[list[float]], at: int) -> None:
        filled, moments, indicator = self._plan
        p = len(DATETIME_PARTS)
        for j, name in enumerate(self.columns):
            ticks = columns[name].view(np.int64).tolist()
            parts = [None if us == NAT else _date_parts(us) for us in ticks]
            if any(q is None and us != NAT for q, us in zip(parts, ticks, strict=True)):
                # beyond Python's years 1-9999: the kernel knows those dates
                kernel = datetime_parts(columns[name], unit="us").tolist()
                parts = [None if us == NAT else q for q, us in zip(kernel, ticks, strict=True)]
            start = at + j * p
            for row, q in zip(rows, parts, strict=True):
                if q is None:
                    row[start : start + p] = filled[j * p : (j + 1) * p]
                    if j in indicator:
                        row[at + indicator[j]] = 1.0
                    continue
                for i, v in enumerate(q):
                    m, sd = moments[j * p + i]
                    row[start + i] = (v - m) / sd

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "columns": self.columns, "parts": list(DATETIME_PARTS),
                "imputer": self.imputer.to_dict(), "scaler": self.scaler.to_dict(),
                "indicators": self.indicators}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Datetime:
        if list(d["parts"]) != list(DATETIME_PARTS):
            raise BadInput(f"pipeline.json: datetime parts {d['parts']} are not this Falaj's "
                           f"{list(DATETIME_PARTS)}")  # fmt: skip
        imputer, scaler = (
            SimpleImputer.from_dict(d["imputer"]),
            StandardScaler.from_dict(d["scaler"]),
        )
        return cls(list(d["columns"]), imputer, scaler, list(d["indicators"]))


class _OneHot:
    kind = "one_hot"

    def __init__(self, column: str, encoder: OneHotEncoder):
        self.column, self.encoder = column, encoder
        self.names = [f"{column}={c}" for c in encoder.categories_.tolist()]

    def transform(self, columns: dict[str, np.ndarray], y: Any = None, seed: int = 0):
        col = _Distinct.of(columns[self.column])
        return self.encoder.transform(col.values)[col.rows]

    @cached_property
    def _index(self) -> dict[str, int]:
        return _index(self.encoder.categories_)

    def fast(self, columns: dict[str, np.ndarray], rows: list[list[float]], at: int) -> None:
        index = self._index
        for row, v in zip(rows, columns[self.column].tolist(), strict=True):
            j = index.get(v)
            if j is not None:
                row[at + j] = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "encoder": self.encoder.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _OneHot:
        return cls(d["column"], OneHotEncoder.from_dict(d["encoder"]))


class _Target:
    """Smoothed target mean (standardised) and frequency of a medium-cardinality input."""

    kind = "target"

    def __init__(self, column: str, target: TargetEncoder, scaler: StandardScaler,
                 frequency: FrequencyEncoder):  # fmt: skip
        self.column, self.target, self.scaler, self.frequency = column, target, scaler, frequency
        self.names = [f"{column}__target", f"{column}__frequency"]

    @classmethod
    def fit(cls, column: str, col: _Distinct, summary: CategorySummary, y: np.ndarray,
            seed: int) -> _Target:  # fmt: skip
        sums = np.bincount(col.rows, weights=y, minlength=len(col.values))[:-1]
        with_y = CategorySummary(summary.categories, summary.counts, summary.n_missing, sums)
        target = TargetEncoder.from_summary(with_y, TARGET_SMOOTH)
        scaler = _fit_scaler(cross_fit(col, y, seed), [column])
        return cls(column, target, scaler, FrequencyEncoder.from_summary(summary))

    def transform(self, columns: dict[str, np.ndarray], y: Any = None, seed: int = 0):
        col = _Distinct.of(columns[self.column])
        # training rows (y given) get out-of-fold encodings, any others the full fit's
        if y is not None:
            encoded = cross_fit(col, y, seed)
        else:
            encoded = self.target.transform(col.values)[col.rows]
        out = np.empty((len(col.rows), 2))
        out[:, 0] = self.scaler.transform(encoded)[:, 0]
        out[:, 1] = self.frequency.transform(col.values)[col.rows]
        return out

    @cached_property
    def _tables(self) -> tuple[dict[str, int], list[float], dict[str, int], list[float]]:
        t, f = self.target, self.frequency
        return (_index(t.categories_), t.encodings_.tolist(),
                _index(f.categories_), f.frequencies_.tolist())  # fmt: skip

    def fast(self, columns: dict[str, np.ndarray], rows: list[list[float]], at: int) -> None:
        index, encodings, freq_index, frequencies = self._tables
        prior = self.target.prior_
        mean, scale = float(self.scaler.mean_[0]), float(self.scaler.scale_[0])
        for row, v in zip(rows, columns[self.column].tolist(), strict=True):
            j, k = index.get(v), freq_index.get(v)
            row[at] = ((prior if j is None else encodings[j]) - mean) / scale
            row[at + 1] = 0.0 if k is None else frequencies[k]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "target": self.target.to_dict(),
                "scaler": self.scaler.to_dict(), "frequency": self.frequency.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Target:
        return cls(d["column"], TargetEncoder.from_dict(d["target"]),
                   StandardScaler.from_dict(d["scaler"]),
                   FrequencyEncoder.from_dict(d["frequency"]))  # fmt: skip


class _Hashing:
    kind = "hashing"

    def __init__(self, column: str, hashing: HashingEncoder, frequency: FrequencyEncoder):
        self.column, self.hashing, self.frequency = column, hashing, frequency
        self.names = [f"{column}__hash_{b}" for b in range(hashing.n_buckets_)] + [
            f"{column}__frequency"
        ]

    def transform(self, columns: dict[str, np.ndarray], y: Any = None, seed: int = 0):
        col = _Distinct.of(columns[self.column])
        per_value = np.empty((len(col.values), len(self.names)))
        per_value[:, :-1] = self.hashing.transform(col.values)
        per_value[-1, :-1] = 0.0  # missing: no bucket
        per_value[:, -1] = self.frequency.transform(col.values)
        return per_value[col.rows]

    @cached_property
    def _tables(self) -> tuple[dict[str, int], list[float]]:
        return _index(self.frequency.categories_), self.frequency.frequencies_.tolist()

    def fast(self, columns: dict[str, np.ndarray], rows: list[list[float]], at: int) -> None:
        index, frequencies = self._tables
        buckets, seed = self.hashing.n_buckets_, int(self.hashing.seed)
        for row, v in zip(rows, columns[self.column].tolist(), strict=True):
            if type(v) is not str:
                continue  # missing: no bucket, frequency 0
            row[at + hash_text(v, buckets, seed)] = 1.0
            k = index.get(v)
            row[at + buckets] = 0.0 if k is None else frequencies[k]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "hashing": self.hashing.to_dict(),
                "frequency": self.frequency.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Hashing:
        return cls(d["column"], HashingEncoder.from_dict(d["hashing"]),
                   FrequencyEncoder.from_dict(d["frequency"]))  # fmt: skip


STEPS = {s.kind: s for s in (_Numeric, _Datetime, _OneHot, _Target, _Hashing)}


def _index(categories: np.ndarray) -> dict[str, int]:
    return {c: j for j, c in enumerate(categories.tolist())}


_M64 = (1 << 64) - 1
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000


def hash_text(text: str, n_buckets: int, seed: int) -> int:
    """``kernels.transforms.hash_buckets`` of one string, in Python integers: FNV-1a 64
    over its UTF-8 bytes (trailing NULs dropped, as NumPy's byte strings do), splitmix64."""
    h = 0xCBF29CE484222325
    for b in text.encode().rstrip(b"\x00"):
        h = ((h ^ b) * 0x100000001B3) & _M64
    z = (h + (seed + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return (z ^ (z >> 31)) % n_buckets


def _date_parts(us: int) -> tuple[int, ...] | None:
    """``DATETIME_PARTS`` of epoch microseconds, as ``datetime_parts`` gives them; None
    outside Python's years 1-9999."""
    days, rem = divmod(us, _DAY_US)
    try:
        d = date.fromordinal(days + _EPOCH_ORDINAL)
    except (ValueError, OverflowError):
        return None
    doy = d.toordinal() - date(d.year, 1, 1).toordinal() + 1
    return d.year, d.month, d.day, d.weekday(), rem // _HOUR_US, doy


# Stands for a missing value in the text handed to the kernels: it is never a fitted
# category (fits see only the present values), so it encodes as unseen, which for one-hot,
# target and frequency encoding is what missing encodes as; hashing zeroes those rows.
_MISSING = "\x00missing"
_TEXT_CHARS = 1 << 26  # largest fixed-width copy of a column (4 bytes a character: 256 MiB)


def _text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text, missing mask) of a categorical column. Fixed-width NumPy text takes the
    kernels' vectorised path, where object arrays take a Python loop per call; long free
    text, whose fixed-width copy would be huge, stays an object array (None missing)."""
    missing = np.equal(values, None)
    longest = max(map(len, values[~missing].tolist()), default=0)
    if longest * len(values) > _TEXT_CHARS:
        return values, missing
    return np.where(missing, _MISSING, values).astype(str), missing


class _Distinct:
    """A categorical column hashed once (Arrow's dictionary encoding): ``text``, its
    distinct present values, sorted, as ``_text`` makes them; ``values``, the same and then
    ``_MISSING``; ``rows``, each row's position in ``values``. An encoder is a function of
    the value, so running it over ``values`` and taking ``rows`` gives its rows' encoding
    while the kernels see each distinct value once, not every row."""

    def __init__(self, column: np.ndarray) -> None:
        encoded = pc.dictionary_encode(pa.array(column, type=pa.large_string()))
        distinct = np.array(encoded.dictionary.to_pylist(), dtype=object)
        # sorted as the kernels sort text; values NumPy text makes equal (trailing NULs) merge
        self.text, inverse = np.unique(_text(distinct)[0], return_inverse=True)
        self.values = np.append(self.text, _MISSING)
        index = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
        self.rows = np.append(inverse, len(self.text))[index]  # -1 (missing): the last
        self.out_of_fold: tuple[Any, int, np.ndarray] | None = None  # (y, seed, encodings)

    @classmethod
    def of(cls, column: np.ndarray | _Distinct) -> _Distinct:
        return column if isinstance(column, _Distinct) else cls(column)


def cross_fit(col: _Distinct, y: np.ndarray, seed: int, folds: int = TARGET_FOLDS):
    """Out-of-fold target encodings of the training rows: each row's from the other folds,
    whose counts and target sums per category (all rows' less the fold's, counted in one
    pass) are the summary a ``TargetEncoder`` is fitted from."""
    cached = col.out_of_fold
    if cached is not None and cached[0] is y and cached[1] == seed:
        return cached[2]  # the fit's, asked again for the training rows' matrix
    rows, k = col.rows, len(col.values)
    fold = np.random.default_rng(seed).permutation(len(rows)) % folds
    key = fold * k + rows
    counts = np.bincount(key, minlength=folds * k).reshape(folds, k)
    sums = np.bincount(key, weights=y, minlength=folds * k).reshape(folds, k)
    per_fold = np.empty((folds, k))
    for f in range(folds):
        rest_counts = counts.sum(axis=0) - counts[f]
        if rest_counts[:-1].any():
            rest_sums = sums.sum(axis=0) - sums[f]
            summary = CategorySummary(col.text, rest_counts[:-1], 0, rest_sums[:-1])
            per_fold[f] = TargetEncoder.from_summary(summary, TARGET_SMOOTH).transform(col.values)
        else:  # nothing to learn from in the other folds: their prior
            rest = rest_counts.sum()
            per_fold[f] = (sums.sum() - sums[f].sum()) / rest if rest else y.mean()
    out = per_fold[fold, rows]
    col.out_of_fold = (y, seed, out)
    return out


def _fit_categorical(col: _Distinct, name: str, y: np.ndarray | None, seed: int):
    if len(col.text) == 0:
        raise BadInput(
            f"input {name!r} has no values in the training rows; "
            "exclude it or give it the role 'ignore'"
        )
    counts = np.bincount(col.rows, minlength=len(col.values))
    summary = CategorySummary(col.text.astype(str), counts[:-1], int(counts[-1]))
    k = len(summary.categories)
    if k <= ONE_HOT_MAX:
        return _OneHot(name, OneHotEncoder.from_summary(summary))
    if y is not None and (k <= TARGET_MAX or summary.total >= TARGET_ROWS * k):
        return _Target.fit(name, col, summary, y, seed)
    return _Hashing(
        name, HashingEncoder(HASH_BUCKETS).fit(), FrequencyEncoder.from_summary(summary)
    )


# ---------------------------------------------------------------- columns


def _check_columns(columns: Any, inputs: list[Input]) -> int:
    if not isinstance(columns, dict):
        raise BadInput(f"columns: expected a dict name -> array, got {type(columns).__name__}")
    n = None
    for i in inputs:
        if i.name not in columns:
            raise BadInput(f"columns: no column {i.name!r} (the model needs "
                           f"{', '.join(x.name for x in inputs)})")  # fmt: skip
        got = len(columns[i.name])
        if n is not None and got != n:
            raise BadInput(f"columns: {i.name!r} has {got} rows, the others {n}")
        n = got
    return n or 0


_TEXT_TYPES = {str, type(None)}


def _as_column(values: Any, i: Input) -> np.ndarray:
    """A column in its role's canonical dtype; categories not given as text become text."""
    try:
        if i.role == "numeric":
            return np.asarray(values, dtype=np.float64)
        if i.role == "datetime":
            return np.asarray(values).astype("datetime64[us]", copy=False)
        values = np.asarray(values, dtype=object)
        if not set(map(type, values.tolist())) <= _TEXT_TYPES:
            text = np.empty(len(values), dtype=object)
            text[:] = [category_text(v) for v in values.tolist()]
            return text
        return values
    except (TypeError, ValueError) as exc:
        raise BadInput(f"columns: {i.name!r} cannot be a {i.role} input ({exc})") from None


class Pipeline:
    """Fitted preprocessing from raw input columns to the model's float64 matrix."""

    def __init__(self, inputs: list[Input], steps: list[Any]) -> None:
        self.inputs = list(inputs)
        self.steps = steps
        self.feature_names_ = [name for s in steps for name in s.names]
        self._offsets = np.cumsum([0] + [len(s.names) for s in steps])[:-1].tolist()
        self._roles = {i.name: i.role for i in self.inputs}
        self._datetimes = [i.name for i in self.inputs if i.role == "datetime"]

    @classmethod
    def fit(cls, columns: dict, inputs: list[Input], y: np.ndarray | None = None,
            task: str = "binary", seed: int = 0) -> Pipeline:  # fmt: skip
        return cls.fit_transform(columns, inputs, y, task, seed)[0]

    @classmethod
    def fit_transform(cls, columns: dict, inputs: list[Input], y: np.ndarray | None = None,
                      task: str = "binary", seed: int = 0) -> tuple[Pipeline, np.ndarray]:  # fmt: skip
        """Fit on the training rows and return their matrix; target encodings in it are out
        of fold (``transform`` on the same rows would give the in-sample ones)."""
        if task not in TASKS:
            raise BadInput(f"task {task!r} is not one of {', '.join(TASKS)}")
        if not inputs:
            raise BadInput("a pipeline needs at least one input column")
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise BadInput(f"inputs name a column twice: {', '.join(names)}")
        n = _check_columns(columns, inputs)
        if n == 0:
            raise BadInput("no training rows to fit the pipeline on")
        columns = {i.name: _as_column(columns[i.name], i) for i in inputs}
        if y is not None:
            y = _check_target(y, n, task)
        by_role = {r: [i.name for i in inputs if i.role == r] for r in ROLES}
        steps: list[Any] = []
        if by_role["numeric"]:
            steps.append(_Numeric.fit(columns, by_role["numeric"]))
        for name in by_role["categorical"]:  # hashed once for the fit and the training rows
            columns[name] = _Distinct(columns[name])
            steps.append(_fit_categorical(columns[name], name, y, seed))
        if by_role["datetime"]:
            steps.append(_Datetime.fit(columns, by_role["datetime"]))
        pipeline = cls(inputs, steps)
        return pipeline, pipeline._apply(columns, n, y, seed)

    def transform(self, columns: dict, *, fast: bool | None = None) -> np.ndarray:
        """The model's matrix (n, len(feature_names_)): float64, finite.

        ``fast`` (default: up to ``FAST_ROWS`` rows) applies the fitted state without the
        kernels' dispatch; the result is the same.
        """
        if type(columns) is _RecordColumns and columns.owner is self:
            n = len(columns.rows)  # built by columns_from_records: already canonical
        else:
            n = _check_columns(columns, self.inputs)
            columns = {i.name: _as_column(columns[i.name], i) for i in self.inputs}
        if fast if fast is not None else n <= FAST_ROWS:
            rows = [[0.0] * len(self.feature_names_) for _ in range(n)]
            for step, at in zip(self.steps, self._offsets, strict=True):
                step.fast(columns, rows, at)
            return np.array(rows, dtype=np.float64).reshape(n, len(self.feature_names_))
        return self._apply(columns, n, None, 0)

    def _apply(self, columns: dict, n: int, y: np.ndarray | None, seed: int) -> np.ndarray:
        out = np.empty((n, len(self.feature_names_)))
        for step, at in zip(self.steps, self._offsets, strict=True):
            out[:, at : at + len(step.names)] = step.transform(columns, y, seed)
        return out

    # ------------------------------------------------------------ monitoring

    @cached_property
    def _monitor_plan(self) -> list[tuple[str, str, dict[str, int] | None]]:
        """Per input, in order: (name, role, its category index when categorical)."""
        known: dict[str, dict[str, int]] = {}
        for s in self.steps:
            if isinstance(s, _OneHot):
                known[s.column] = _index(s.encoder.categories_)
            elif isinstance(s, _Target | _Hashing):
                known[s.column] = _index(s.frequency.categories_)
        return [(i.name, i.role, known.get(i.name)) for i in self.inputs]

    def monitor_vector(self, columns: dict) -> np.ndarray:
        """The raw inputs as monitoring compares them with training: (n, len(inputs))
        float64, one column per input in ``inputs`` order. Numeric: the value (NaN for
        null); categorical: the index of the category among the fitted ones (sorted),
        -1 for a category training never saw, NaN for null; datetime: epoch seconds (NaN
        for null). Cheap for one row (the serving hot path), vectorised for many."""
        if type(columns) is _RecordColumns and columns.owner is self:
            n = len(columns.rows)
        else:
            n = _check_columns(columns, self.inputs)
            columns = {i.name: _as_column(columns[i.name], i) for i in self.inputs}
        out = np.empty((n, len(self.inputs)))
        for j, (name, role, index) in enumerate(self._monitor_plan):
            col = columns[name]
            if role == "numeric":
                out[:, j] = col
            elif role == "datetime":
                ticks = col.view(np.int64)
                out[:, j] = ticks / 1e6
                out[ticks == NAT, j] = np.nan
            else:
                out[:, j] = _category_codes(col, index or {}, n)
        return out

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "inputs": [{"name": i.name, "role": i.role} for i in self.inputs],
            "steps": [s.to_dict() for s in self.steps],
            "feature_names": self.feature_names_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pipeline:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise BadInput(f"pipeline.json: format {got!r} is not one this Falaj reads ({FORMAT})")
        try:
            inputs = [Input(i["name"], i["role"]) for i in d["inputs"]]
            steps = []
            for s in d["steps"]:
                if s.get("kind") not in STEPS:
                    raise BadInput(f"pipeline.json: unknown step kind {s.get('kind')!r}")
                steps.append(STEPS[s["kind"]].from_dict(s))
            pipeline = cls(inputs, steps)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInput(f"pipeline.json: malformed ({type(exc).__name__}: {exc})") from None
        if "feature_names" in d and d["feature_names"] != pipeline.feature_names_:
            raise BadInput("pipeline.json: its feature names do not match its steps")
        return pipeline

    # ------------------------------------------------------------ records

    def columns_from_records(self, records: list[dict], where: str = "records") -> dict:
        """Validate JSON records into ``columns``; errors name ``{where}[{i}].{field}``.

        A null is missing. Numeric inputs take JSON numbers; categorical ones strings,
        integers (as text), whole floats (as their integer), booleans ("true"/"false");
        datetime ones ISO-8601 strings (a zone offset converts to UTC). Other keys are
        ignored.
        """
        if not isinstance(records, list) or not records:
            raise BadInput(f"{where}: expected a non-empty list of records (JSON objects)")
        values: dict[str, list] = {i.name: [] for i in self.inputs}
        parsers = [(i.name, _PARSERS[i.role], values[i.name]) for i in self.inputs]
        for r, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise BadInput(f"{where}[{r}]: expected an object {{input: value}}, got "
                               f"{_json_kind(rec)}")  # fmt: skip
            for name, parse, out in parsers:
                try:
                    v = rec[name]
                except KeyError:
                    raise BadInput(f"{where}[{r}].{name}: missing (model needs "
                                   f"{', '.join(values)})") from None  # fmt: skip
                out.append(parse(v, where, r, name))
        out = _RecordColumns(
            {name: np.array(v, dtype=_DTYPES[self._roles[name]]) for name, v in values.items()}
        )
        for name in self._datetimes:
            dict.__setitem__(out, name, out[name].view("datetime64[us]"))
        out.owner, out.rows = self, records
        return out


def _category_codes(values: np.ndarray, index: dict[str, int], n: int) -> Any:
    """Each value's position in ``index`` (-1: unseen, NaN: missing)."""
    if n <= FAST_ROWS:
        return [math.nan if v is None else index.get(v, -1) for v in values.tolist()]
    encoded = pc.dictionary_encode(pa.array(values, type=pa.large_string()))
    distinct = encoded.dictionary.to_pylist()
    codes = np.array([index.get(v, -1) for v in distinct] + [math.nan], dtype=np.float64)
    return codes[pc.fill_null(encoded.indices, len(distinct)).to_numpy()]


class _RecordColumns(dict):
    """``columns`` that ``columns_from_records`` built, in their canonical dtypes: the
    pipeline that built them transforms them without checking them again."""

    owner: Pipeline | None
    rows: list

    def __setitem__(self, key: str, value: Any) -> None:
        self.owner = None  # changed: check it again
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.owner = None
        super().update(*args, **kwargs)


def _check_target(y: Any, n: int, task: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise BadInput(f"target: expected {n} values (one per row), got shape {y.shape}")
    if y.dtype.kind not in "biuf":
        raise BadInput(f"target: expected numbers, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        raise BadInput(f"target: {int((~np.isfinite(y)).sum())} values are missing or not finite")
    if task == "binary" and not np.isin(y, (0.0, 1.0)).all():
        raise BadInput("target: a binary task needs labels 0 and 1")
    return y


# ---------------------------------------------------------------- record values


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return f"a string ({v[:40]!r})"
    if isinstance(v, int | float):
        return f"a number ({v!r})"
    if isinstance(v, list | tuple):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _numeric(v: Any, where: str, r: int, name: str) -> float:
    t = type(v)
    if t is float:
        if math.isinf(v):
            raise BadInput(f"{where}[{r}].{name}: {v} is not a finite number")
        return v  # NaN: missing
    if t is int:
        try:
            return float(v)
        except OverflowError:
            raise BadInput(f"{where}[{r}].{name}: {v} is too large for a float64") from None
    if v is None:
        return math.nan
    raise BadInput(f"{where}[{r}].{name}: expected a number or null, got {_json_kind(v)}")


def category_text(v: Any) -> str | None:
    """A categorical value as the text category it is (None: missing); ValueError if none.

    Matches Arrow's casts to string: booleans "true"/"false", whole floats as integers.
    """
    t = type(v)
    if t is str:
        return v
    if v is None:
        return None
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        if v != v:
            return None
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)
    raise ValueError(_json_kind(v))


def _categorical(v: Any, where: str, r: int, name: str) -> str | None:
    try:
        return category_text(v)
    except ValueError as exc:
        raise BadInput(f"{where}[{r}].{name}: expected a string, number, boolean or null, "
                       f"got {exc}") from None  # fmt: skip


_EPOCH, _EPOCH_UTC = datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_datetime(text: str) -> int:
    """An ISO-8601 date or date-time as UTC epoch microseconds (a zone offset converts;
    none means UTC); ValueError if it is none."""
    dt = datetime.fromisoformat(text)
    return (dt - (_EPOCH if dt.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND


def _datetime(v: Any, where: str, r: int, name: str) -> int:
    if v is None:
        return NAT
    if type(v) is not str:
        raise BadInput(f"{where}[{r}].{name}: expected an ISO-8601 date-time string or null, "
                       f"got {_json_kind(v)}")  # fmt: skip
    try:
        return parse_datetime(v)
    except ValueError:
        raise BadInput(f"{where}[{r}].{name}: {v[:40]!r} is not an ISO-8601 date-time "
                       "(e.g. 2024-05-01T13:45:00Z)") from None  # fmt: skip


_PARSERS = {"numeric": _numeric, "categorical": _categorical, "datetime": _datetime}
_DTYPES = {"numeric": np.float64, "categorical": object, "datetime": np.int64}


# ---------------------------------------------------------------- Arrow


def columns_from_arrow(table: pa.Table, inputs: list[Input]) -> dict[str, np.ndarray]:
    """The inputs' ``columns`` from an Arrow table; errors name the column."""
    out = {}
    for i in inputs:
        if i.name not in table.column_names:
            raise BadInput(f"table has no column {i.name!r} (columns: "
                           f"{', '.join(table.column_names)})")  # fmt: skip
        out[i.name] = _from_arrow(table[i.name], i)
    return out


def _from_arrow(col: pa.ChunkedArray, i: Input) -> np.ndarray:
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    bad = BadInput(f"column {i.name!r}: type {t} cannot be a {i.role} input")
    if i.role == "numeric":
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_decimal(t) or pa.types.is_null(t)):  # fmt: skip
            raise bad
        return pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    if i.role == "categorical":
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            values = col.to_numpy(zero_copy_only=False)
        elif (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)
              or pa.types.is_null(t)):  # fmt: skip
            values = pc.cast(col, pa.string()).to_numpy(zero_copy_only=False)
        else:
            raise bad
        return np.asarray(values, dtype=object)
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_null(t):
        return pc.cast(col, pa.timestamp("us"), safe=False).to_numpy(zero_copy_only=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = np.empty(len(col), dtype=np.int64)
        for r, v in enumerate(col.to_pylist()):
            try:
                out[r] = NAT if v is None else parse_datetime(v)
            except ValueError:
                raise BadInput(f"column {i.name!r} row {r}: {v[:40]!r} is not an ISO-8601 "
                               "date-time") from None  # fmt: skip
        return out.view("datetime64[us]")
    raise bad
