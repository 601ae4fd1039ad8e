"""Model families: one ``Estimator`` interface over linear models, gradient-boosted trees
and an MLP, for binary classification and regression.

    from appliance.training import families
    est = families.get("gbt")(task="binary", num_leaves=63).fit(X, y, seed=1)
    p = est.predict(X)                       # P(y = 1)
    files = est.documents()                  # {"model.json": {...}, "model.txt": "..."}
    same = families.load({k: encode(v) for k, v in files.items()})

Hyperparameters are stored by ``__init__`` and checked by ``fit`` (or ``checked_params``),
the scikit-learn way; a bad one is ``BadInput`` naming the family and the parameter.
Each family declares its parameters once (``PARAMS``), from which ``defaults()``,
validation and ``space()`` (the default search space) follow. Family modules are imported
on first use, so serving a linear model never imports LightGBM or PyTorch, and the MLP
predicts with NumPy alone.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

import kernels
from appliance.errors import BadInput
from kernels._backend import gpu_available

log = logging.getLogger("falaj.training")

FAMILIES = ("linear", "gbt", "mlp")
TASKS = ("binary", "regression")

_threads: int | None = None  # set_threads' choice; None: the CPUs this process may use


def set_threads(n: int | None) -> None:
    """Threads LightGBM and PyTorch train with, in this process (None: all usable CPUs)."""
    global _threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise BadInput(f"training threads must be a positive integer, got {n!r}")
    _threads = n


def threads() -> int:
    if _threads is not None:
        return _threads
    try:  # the CPUs this process may run on (a container's share), not the host's count
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def wants_gpu() -> bool:
    """Whether the device setting asks training to try the GPU: ``cuda``, or ``auto`` with a
    GPU that answers. A family that cannot use it falls back to the CPU and says so in
    ``device_``."""
    device = kernels.get_device()
    return device == "cuda" or (device == "auto" and gpu_available())


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its kind ("int", "float" or "layers"), default, bounds (``lo`` and
    ``hi`` inclusive, ``lo_open`` makes ``lo`` exclusive) and its default search range (a
    ``space()`` entry, or None when it is not searched)."""

    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    search: dict | None = None

    def check(self, where: str, value: Any) -> Any:
        """The value, normalised (ints as int, floats as float, layers as a list of ints),
        or BadInput naming ``where``."""
        if self.kind == "layers":
            return _layers(where, value)
        ok = _is_number(value)
        if ok and self.kind == "int":
            ok = float(value).is_integer()
            value = int(value) if ok else value
        elif ok:
            value = float(value)
            ok = math.isfinite(value)
        if not ok:
            kind = "an integer" if self.kind == "int" else "a finite number"
            raise BadInput(f"{where} must be {kind}, got {value!r}")
        low_fails = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if low_fails or (self.hi is not None and value > self.hi):
            raise BadInput(f"{where} must be {self._range()}, got {value!r}")
        return value

    def _range(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"<= {self.hi:g}"
        return " and ".join(p for p in (lo, hi) if p)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.number)


def _layers(where: str, value: Any) -> list[int]:
    """Hidden layer sizes from a list of ints or a string such as "64,32" (search spaces
    hold strings, since Optuna's categorical choices cannot be lists)."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        sizes = [int(str(v).strip()) for v in items]
        ok = bool(sizes) and all(1 <= s <= 4096 for s in sizes) and len(sizes) <= 8
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BadInput(
            f"{where} must be 1 to 8 layer sizes between 1 and 4096, such as [64, 32] or "
            f'"64,32"; got {value!r}'
        )
    return sizes


class Estimator:
    """The interface every family implements; see the module docstring.

    Subclasses set ``family``, ``PARAMS`` (per task: name -> Param) and implement
    ``_fit``, ``_predict``, ``_state`` (what model.json holds besides the common keys) and
    ``_restore``.
    """

    family: str = ""
    PARAMS: dict[str, dict[str, Param]] = {}

    def __init__(self, task: str = "binary", **params: Any) -> None:
        self.task = task
        self.params = params

    # -- hyperparameters -------------------------------------------------------------

    @classmethod
    def defaults(cls, task: str = "binary") -> dict[str, Any]:
        return {name: p.default for name, p in cls._params(task).items()}

    @classmethod
    def space(cls, task: str = "binary") -> dict[str, dict]:
        """The default search space: name -> {"int"|"uniform"|"log_uniform": [lo, hi]}
        or {"choice": [...]}."""
        return {n: dict(p.search) for n, p in cls._params(task).items() if p.search}

    @classmethod
    def _params(cls, task: str) -> dict[str, Param]:
        if task not in TASKS:
            raise BadInput(f"{cls.family}: task must be one of {', '.join(TASKS)}, got {task!r}")
        return cls.PARAMS[task]

    def checked_params(self) -> dict[str, Any]:
        """The defaults updated with the given params, each checked; BadInput names the
        first bad or unknown one."""
        known = self._params(self.task)
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise BadInput(
                f"{self.family} ({self.task}) has no parameter {unknown[0]!r} "
                f"(parameters: {', '.join(known)})"
            )
        merged = self.defaults(self.task) | self.params
        return {n: known[n].check(f"{self.family}: {n}", v) for n, v in merged.items()}

    # -- fitting and predicting ------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        seed: int = 0,
        X_valid: Any = None,
        y_valid: Any = None,
        budget: float = 1.0,
    ) -> Estimator:
        """Fit on X (rows, features) and y; with X_valid/y_valid, families that train in
        rounds or epochs stop early on the validation loss. ``budget`` in (0, 1] is the
        share of the full effort (rounds, epochs) to spend, for successive halving."""
        self.params_ = self.checked_params()
        if not _is_number(seed) or seed != int(seed) or not 0 <= seed < 2**31:
            # LightGBM takes a 32-bit seed
            raise BadInput(f"{self.family}: seed must be an integer in [0, 2**31), got {seed!r}")
        if not _is_number(budget) or not 0 < budget <= 1:
            raise BadInput(f"{self.family}: budget must be in (0, 1], got {budget!r}")
        X, y = self._data(X, y, "X", "y")
        if (X_valid is None) != (y_valid is None):
            raise BadInput(f"{self.family}: give both X_valid and y_valid, or neither")
        if X_valid is not None:
            X_valid, y_valid = self._data(X_valid, y_valid, "X_valid", "y_valid", X.shape[1])
        self.n_features_ = int(X.shape[1])
        self._fit(X, y, int(seed), X_valid, y_valid, float(budget))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """P(y = 1) for binary, the predicted value for regression: float64 (rows,)."""
        if not hasattr(self, "n_features_"):
            raise BadInput(f"{self.family}: the model is not fitted; call fit first")
        return self._predict(self._matrix(X, "X", self.n_features_))

    def _data(self, X: Any, y: Any, xn: str, yn: str, d: int | None = None):
        X = self._matrix(X, xn, d)
        try:
            y = np.asarray(y, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{self.family}: {yn} must be numeric ({exc})") from None
        if y.shape[0] != X.shape[0]:
            raise BadInput(f"{self.family}: {xn} has {X.shape[0]} rows but {yn} {y.shape[0]}")
        if X.shape[0] < 2:
            raise BadInput(f"{self.family}: {xn} needs at least 2 rows, got {X.shape[0]}")
        if not np.isfinite(y).all():
            raise BadInput(f"{self.family}: {yn} contains NaN or infinity")
        if self.task == "binary":
            if not ((y == 0) | (y == 1)).all():
                raise BadInput(f"{self.family}: {yn} must hold only 0 and 1 for a binary task")
            if xn == "X" and y.min() == y.max():
                raise BadInput(f"{self.family}: {yn} needs both classes (0 and 1)")
        return X, y

    def _matrix(self, X: Any, name: str, d: int | None) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{self.family}: {name} must be numeric ({exc})") from None
        if X.ndim != 2:
            raise BadInput(f"{self.family}: {name} must be 2-d (rows, features), got {X.shape}")
        if d is not None and X.shape[1] != d:
            raise BadInput(f"{self.family}: {name} has {X.shape[1]} features, the model {d}")
        if not np.isfinite(X).all():
            raise BadInput(f"{self.family}: {name} contains NaN or infinity")
        return X

    # -- bundle files ----------------------------------------------------------------

    def documents(self) -> dict[str, Any]:
        """Bundle files: name -> a JSON value, or a str for a text file. Every family
        writes model.json with its family, task, params and device."""
        common = {
            "family": self.family,
            "task": self.task,
            "params": self.params_,
            "n_features": self.n_features_,
            "device": self.device_,
        }
        doc, extra = self._state()
        return {"model.json": common | doc, **extra}

    @classmethod
    def from_documents(cls, files: dict[str, bytes]) -> Estimator:
        """The estimator that ``documents()`` wrote (values as bytes or str). Called on
        ``Estimator`` itself it picks the family named in model.json."""
        doc = json.loads(bundle_text(files, "model.json"))
        family = doc.get("family")
        expected = (cls.family,) if cls.family else FAMILIES
        if family not in expected:
            raise BadInput(
                f"model.json names family {family!r}, expected one of {', '.join(expected)}"
            )
        klass = get(family)
        try:
            self = klass(doc["task"], **doc["params"])
            self.params_ = self.checked_params()
            self.n_features_ = int(doc["n_features"])
            self.device_ = doc.get("device", "cpu")
            self._restore(doc, files)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{family} model.json is not readable: {exc!r}") from None
        return self

    # -- what a family implements ----------------------------------------------------

    def _fit(self, X, y, seed, X_valid, y_valid, budget) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def _restore(self, doc: dict[str, Any], files: dict[str, Any]) -> None:
        raise NotImplementedError


def bundle_text(files: dict[str, Any], name: str) -> str:
    """A bundle file's text, given as bytes or str; BadInput when it is missing."""
    if name not in files:
        raise BadInput(f"the model bundle has no {name} (files: {', '.join(sorted(files))})")
    value = files[name]
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else value


def get(name: str) -> type[Estimator]:
    """The Estimator class of a family: "linear", "gbt" or "mlp"."""
    if name not in FAMILIES:
        raise BadInput(f"unknown model family {name!r} (families: {', '.join(FAMILIES)})")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.FAMILY


def load(files: dict[str, bytes]) -> Estimator:
    """The estimator a bundle's files hold, whatever its family."""
    return Estimator.from_documents(files)


__all__ = [
    "FAMILIES", "TASKS", "Estimator", "Param", "bundle_text", "get", "load", "set_threads",
    "threads",
]  # fmt: skip
