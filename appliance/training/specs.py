"""Training specs: how a model is trained, declared in the workspace and run with
``falaj train --spec NAME``. The CLI's flags build the same ``Spec``.

    training:
      credit_risk:
        table: credit_applications        # or training_set: ID | FILE
        label: default
        features: [age, income, region]   # default: every column but keys and label
        roles: {branch_code: categorical, customer_id: id}
        sensitive: gender                 # kept for the fairness gate, not an input
        family: gbt                       # linear | gbt | mlp
        params: {num_leaves: 31}
        split: {kind: time, holdout: 0.2} # time | stratified | kfold (k: 5)
        search: {strategy: halving, trials: 24, timeout: 10m, seed: 7, metric: roc_auc,
                 space: {num_leaves: {int: [8, 128]}}}
        gates: {champion: {margin: 0.002}, fairness: {demographic_parity: 0.1}}
        threshold: 0.5
        intended_use: Ranks loan applications by risk of default for review by a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.durations import parse_duration
from appliance.errors import BadInput
from appliance.features.workspace import check_keys, expect_mapping
from appliance.names import check_name

SPEC_KEYS = {"table", "training_set", "label", "features", "roles", "sensitive", "family",
             "params", "split", "search", "gates", "threshold", "intended_use", "model",
             "task"}  # fmt: skip
SPLIT_KINDS = ("time", "stratified", "kfold")
SEARCH_KEYS = {"strategy", "trials", "timeout", "seed", "metric", "space"}
STRATEGIES = ("random", "grid", "halving")
ROLES = ("numeric", "categorical", "datetime", "id", "ignore")
TASKS = ("binary", "regression")
DIST_KINDS = ("int", "uniform", "log_uniform", "choice")


@dataclass(frozen=True)
class Search:
    strategy: str = "random"
    trials: int = 20
    timeout_s: float | None = None
    seed: int = 0
    metric: str | None = None  # default: roc_auc (binary) / rmse (regression)
    space: dict[str, dict[str, Any]] | None = None  # default: the family's


@dataclass(frozen=True)
class Spec:
    name: str
    label: str
    table: str | None = None
    training_set: str | None = None
    model: str | None = None  # default: the spec's name
    task: str | None = None  # default: binary when the label holds only 0 and 1
    features: tuple[str, ...] | None = None
    roles: dict[str, str] = field(default_factory=dict)
    sensitive: str | None = None
    family: str = "linear"
    params: dict[str, Any] = field(default_factory=dict)
    split: str = "time"
    holdout: float = 0.2
    k: int = 5
    search: Search | None = None
    gates: dict[str, Any] | None = None
    threshold: float = 0.5
    intended_use: str | None = None
    seed: int = 0
    where: str = "spec"

    @property
    def model_name(self) -> str:
        return self.model or self.name

    def describe(self) -> dict[str, Any]:
        """The spec as lineage records it."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("where", "search")}
        d["features"] = list(self.features) if self.features else None
        d["search"] = None if self.search is None else dict(self.search.__dict__)
        return d


def _column(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where}: {value!r} is not a column name")
    return value


def _number(value: Any, where: str, lo: float, hi: float, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise BadInput(f"{where}: expected {kind} from {lo:g} to {hi:g}, got {value!r}")
    return value


def parse_space(d: Any, where: str) -> dict[str, dict[str, Any]]:
    space = {}
    for name, dist in expect_mapping(d, where).items():
        at = f"{where}: {name}"
        dist = expect_mapping(dist, at)
        if len(dist) != 1 or next(iter(dist)) not in DIST_KINDS:
            raise BadInput(f"{at}: expected one of {', '.join(DIST_KINDS)}, like {{int: [8, 64]}}")
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise BadInput(f"{at}: choice: expected a non-empty list")
        elif (
            not isinstance(args, list)
            or len(args) != 2
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
            or not args[0] <= args[1]
            or (kind == "log_uniform" and args[0] <= 0)
            or (kind == "int" and not all(isinstance(a, int) for a in args))
        ):
            raise BadInput(f"{at}: {kind}: expected [low, high] with low <= high"
                           + (" and low > 0" if kind == "log_uniform" else ""))  # fmt: skip
        space[str(name)] = {kind: args}
    return space


def parse_search(d: Any, where: str) -> Search:
    d = expect_mapping(d, where)
    check_keys(d, SEARCH_KEYS, where)
    strategy = d.get("strategy", "random")
    if strategy not in STRATEGIES:
        raise BadInput(f"{where}: strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    timeout = d.get("timeout")
    return Search(
        strategy=strategy,
        trials=_number(d.get("trials", 20), f"{where}: trials", 1, 10_000, integer=True),
        timeout_s=None if timeout is None else parse_duration(timeout, f"{where}: timeout").total_seconds(),
        seed=_number(d.get("seed", 0), f"{where}: seed", 0, 2**31 - 1, integer=True),
        metric=_metric(d.get("metric"), f"{where}: metric"),
        space=parse_space(d["space"], f"{where}: space") if "space" in d else None,
    )  # fmt: skip


def _metric(value: Any, where: str) -> str | None:
    from appliance.training.gates import COMPARABLE  # the metrics evaluation computes

    if value is not None and value not in COMPARABLE:
        raise BadInput(f"{where}: {value!r} is not one of {', '.join(sorted(COMPARABLE))}")
    return value


def _check_params(family: str, task: str | None, params: dict[str, Any],
                  space: dict[str, Any] | None, where: str) -> None:  # fmt: skip
    """Parameter names (and given values) the family knows, checked when the spec is
    read rather than at its first fit. Until the label decides the task, a name that
    either task knows is allowed."""
    from appliance.training import families

    cls = families.get(family)
    known: dict[str, Any] = {}
    for t in [task] if task else TASKS:
        for n, param in cls.PARAMS[t].items():
            known.setdefault(n, param)
    for part, names in (("params", params), ("search: space", space or {})):
        for n in names:
            if n not in known:
                raise BadInput(f"{where}: {part}: {family} has no parameter {n!r} "
                               f"(parameters: {', '.join(known)})")  # fmt: skip
    for n, value in params.items():
        known[n].check(f"{where}: params: {n}", value)


def _named(kind: str, value: Any, where: str) -> str:
    try:
        return check_name(kind, value)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}") from None


def parse_spec(name: Any, d: Any, where: str) -> Spec:
    """A spec as declared in the workspace, checked for shape (tables and columns are
    checked when it runs)."""
    name = _named("training spec", name, where)
    d = expect_mapping(d, where)
    check_keys(d, SPEC_KEYS, where)
    if ("table" in d) == ("training_set" in d):
        raise BadInput(f"{where}: give exactly one of table or training_set")
    if "label" not in d:
        raise BadInput(f"{where}: label is missing")
    kw: dict[str, Any] = {
        "name": name,
        "where": where,
        "label": _column(d["label"], f"{where}: label"),
    }
    if "table" in d:
        kw["table"] = _named("table", d["table"], f"{where}: table")
    else:
        kw["training_set"] = _column(d["training_set"], f"{where}: training_set")
    if "model" in d:
        kw["model"] = _named("model", d["model"], f"{where}: model")
    if "task" in d:
        if d["task"] not in TASKS:
            raise BadInput(f"{where}: task: {d['task']!r} is not one of {', '.join(TASKS)}")
        kw["task"] = d["task"]
    if "features" in d:
        feats = d["features"]
        if not isinstance(feats, list) or not feats:
            raise BadInput(f"{where}: features: expected a non-empty list of column names")
        kw["features"] = tuple(_column(f, f"{where}: features") for f in feats)
    if "roles" in d:
        roles = {}
        for col, role in expect_mapping(d["roles"], f"{where}: roles").items():
            if role not in ROLES:
                raise BadInput(f"{where}: roles: {col}: {role!r} is not one of {', '.join(ROLES)}")
            roles[_column(col, f"{where}: roles")] = role
        kw["roles"] = roles
    if d.get("sensitive") is not None:
        kw["sensitive"] = _column(d["sensitive"], f"{where}: sensitive")
    if "family" in d:
        from appliance.training import families

        try:
            families.get(d["family"])  # names the families when unknown
        except BadInput as exc:
            raise BadInput(f"{where}: family: {exc.message}") from None
        kw["family"] = d["family"]
    if "params" in d:
        kw["params"] = dict(expect_mapping(d["params"], f"{where}: params"))
    if "split" in d:
        split = d["split"]
        split = (
            {"kind": split} if isinstance(split, str) else expect_mapping(split, f"{where}: split")
        )
        check_keys(split, {"kind", "holdout", "k"}, f"{where}: split")
        kind = split.get("kind", "time")
        if kind not in SPLIT_KINDS:
            raise BadInput(f"{where}: split: kind: {kind!r} is not one of {', '.join(SPLIT_KINDS)}")
        kw["split"] = kind
        if "holdout" in split:
            kw["holdout"] = _number(split["holdout"], f"{where}: split: holdout", 0.01, 0.9)
        if "k" in split:
            kw["k"] = _number(split["k"], f"{where}: split: k", 2, 20, integer=True)
    if d.get("search") is not None:
        kw["search"] = parse_search(d["search"], f"{where}: search")
        kw["seed"] = kw["search"].seed
    if d.get("gates") is not None:
        from appliance.training.gates import GateConfig

        try:  # checked now, used later
            GateConfig.from_spec(expect_mapping(d["gates"], f"{where}: gates"))
        except BadInput as exc:  # its message names the key path from "gates"
            raise BadInput(f"{where}: {exc.message}") from None
        kw["gates"] = d["gates"]
    _check_params(kw.get("family", "linear"), kw.get("task"), kw.get("params", {}),
                  kw["search"].space if kw.get("search") else None, where)  # fmt: skip
    if "threshold" in d:
        kw["threshold"] = _number(d["threshold"], f"{where}: threshold", 0.0, 1.0)
    if d.get("intended_use") is not None:
        if not isinstance(d["intended_use"], str):
            raise BadInput(f"{where}: intended_use must be text")
        kw["intended_use"] = d["intended_use"]
    return Spec(**kw)


def parse_specs(d: Any, where: str) -> dict[str, Spec]:
    if d is None:
        return {}
    return {str(n): parse_spec(n, s, f"{where}: {n}") for n, s in expect_mapping(d, where).items()}
