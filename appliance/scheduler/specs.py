"""Pipelines as declared in the workspace's ``pipelines:`` section: a list of steps from
a fixed vocabulary and the triggers that start a run. Parsing checks every key and the
steps' order, naming the file and key path ("falaj.yaml: pipelines: retrain: steps[2]:
train: spec: 'x' is not a training spec").

    pipelines:
      retrain:
        schedule: {cron: "0 3 * * *"}        # or {interval: 6h}
        on_new_data: {table: loans, rows: 1000}   # or {table: loans, freshness: 1d}
        on_drift: {model: credit}            # a new open drift alert of the model
        steps:
          - validate: {table: loans, min_rows: 500, max_quarantined: 0.05, max_age: 30d}
          - training_set: {table: loans, label: default, features: ["applicant:*"]}
          - train: {spec: credit, retries: 2, backoff: 30s}
          - evaluate
          - gates
          - register
          - release: {strategy: canary, percent: 10, policy: {min_requests: 500}}
          - approve: {timeout: 1d}
          - decide: {timeout: 2h}

A run keeps the definition it started with (``Pipeline.to_dict``), training specs
included, so a run resumed after a crash does what it set out to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from appliance.durations import parse_duration
from appliance.errors import BadInput
from appliance.features.workspace import check_keys, expect_mapping
from appliance.names import check_name

PIPELINE_KEYS = {"steps", "schedule", "on_new_data", "on_drift", "description"}
COMMON_KEYS = {"name", "retries", "backoff"}
STEP_KEYS: dict[str, set[str]] = {
    "validate": {"table", "min_rows", "max_quarantined", "max_age"},
    "training_set": {"table", "label", "features", "keep"},
    "train": {"spec"},
    "evaluate": set(),
    "gates": set(),
    "register": set(),
    "release": {"strategy", "percent", "policy"},
    "approve": {"timeout"},
    "decide": {"timeout"},
}
KINDS = tuple(STEP_KEYS)
# a step of the left kind needs one of the right kind before it
NEEDS = {"evaluate": "train", "gates": "evaluate", "register": "train",
         "release": "register", "decide": "release"}  # fmt: skip
STRATEGIES = ("canary", "shadow", "blue-green", "ab")
DEFAULT_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    backoff_s: float = DEFAULT_BACKOFF_S

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "args": self.args,
                "retries": self.retries, "backoff_s": self.backoff_s}  # fmt: skip


@dataclass(frozen=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...]
    schedule: dict[str, Any] | None = None  # {"cron": "0 3 * * *"} | {"interval_s": 21600.0}
    on_new_data: dict[str, Any] | None = None  # {"table", "rows"} | {"table", "freshness_s"}
    on_drift: dict[str, Any] | None = None  # {"model"}
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # spec name -> its YAML mapping
    where: str = "pipeline"

    @property
    def model(self) -> str | None:
        """The model the pipeline trains (its train step's spec's model), if any."""
        for s in self.steps:
            if s.kind == "train":
                raw = self.training.get(s.args["spec"], {})
                return raw.get("model") or s.args["spec"]
        return None

    def triggers(self) -> list[str]:
        out = []
        if self.schedule:
            out.append(schedule_text(self.schedule))
        if self.on_new_data:
            d = self.on_new_data
            out.append(f"new data in {d['table']}: " + (f"{d['rows']} rows" if "rows" in d
                       else f"newer by {d['freshness_s']:g}s"))  # fmt: skip
        if self.on_drift:
            out.append(f"drift alert on {self.on_drift['model']}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "steps": [s.to_dict() for s in self.steps], "schedule": self.schedule,
                "on_new_data": self.on_new_data, "on_drift": self.on_drift,
                "training": self.training, "where": self.where}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pipeline:
        steps = tuple(Step(s["name"], s["kind"], s["args"], s["retries"], s["backoff_s"])
                      for s in d["steps"])  # fmt: skip
        return cls(d["name"], steps, d.get("schedule"), d.get("on_new_data"), d.get("on_drift"),
                   d.get("description", ""), d.get("training", {}), d.get("where", "pipeline"))  # fmt: skip


def schedule_text(schedule: dict[str, Any]) -> str:
    if "cron" in schedule:
        return f"cron {schedule['cron']}"
    return f"every {schedule['interval_s']:g}s"


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadInput(f"{where}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise BadInput(f"{where}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _seconds(value: Any, where: str) -> float:
    return parse_duration(value, where).total_seconds()


def _text_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: expected a list of names, got {value!r}")
    return list(value)


def parse_schedule(value: Any, where: str) -> dict[str, Any]:
    d = expect_mapping(value, where)
    check_keys(d, {"cron", "interval"}, where)
    if len(d) != 1:
        raise BadInput(f'{where}: give one of cron ("0 3 * * *") or interval (6h)')
    if "cron" in d:
        expr = d["cron"]
        try:
            CronTrigger.from_crontab(str(expr), timezone="UTC")
        except ValueError as exc:
            raise BadInput(f"{where}: cron: {expr!r} is not a crontab expression ({exc})") from None
        return {"cron": str(expr)}
    return {"interval_s": _seconds(d["interval"], f"{where}: interval")}


def _parse_step_args(kind: str, args: dict[str, Any], where: str,
                     training: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    if kind == "validate":
        if "table" not in args:
            raise BadInput(f"{where}: table is missing (the table to check)")
        out["table"] = _table(args, where)
        if "min_rows" in args:
            out["min_rows"] = _int(args["min_rows"], f"{where}: min_rows", 0, 10**12)
        if "max_quarantined" in args:
            out["max_quarantined"] = _number(args["max_quarantined"],
                                             f"{where}: max_quarantined", 0, 1)  # fmt: skip
        if "max_age" in args:
            out["max_age_s"] = _seconds(args["max_age"], f"{where}: max_age")
    elif kind == "training_set":
        for k in ("table", "label", "features"):
            if k not in args:
                raise BadInput(f"{where}: {k} is missing")
        out["table"] = _table(args, where)
        if not isinstance(args["label"], str) or not args["label"]:
            raise BadInput(f"{where}: label: expected a column name, got {args['label']!r}")
        out["label"] = args["label"]
        out["features"] = _text_list(args["features"], f"{where}: features")
        out["keep"] = _text_list(args["keep"], f"{where}: keep") if "keep" in args else []
    elif kind == "train":
        if "spec" not in args:
            raise BadInput(f"{where}: spec is missing (a spec of the training: section)")
        if args["spec"] not in training:
            raise BadInput(f"{where}: spec: {args['spec']!r} is not a training spec "
                           f"(specs: {', '.join(training) or 'none'})")  # fmt: skip
        out["spec"] = args["spec"]
    elif kind == "release":
        strategy = args.get("strategy", "canary")
        if strategy not in STRATEGIES:
            raise BadInput(f"{where}: strategy: expected one of {', '.join(STRATEGIES)}, "
                           f"got {strategy!r}")  # fmt: skip
        out["strategy"] = strategy
        if "percent" in args:
            out["percent"] = _number(args["percent"], f"{where}: percent", 0, 100)
        if "policy" in args:
            from appliance.serving.releases import Policy  # serving imports the registry

            Policy.parse(args["policy"], f"{where}: policy")  # checked now, applied later
            out["policy"] = expect_mapping(args["policy"], f"{where}: policy")
    elif kind in ("approve", "decide"):
        if "timeout" in args:
            out["timeout_s"] = _seconds(args["timeout"], f"{where}: timeout")
        elif kind == "decide":
            out["timeout_s"] = 3600.0
    return out


def _table(args: dict[str, Any], where: str) -> str:
    try:
        return check_name("table", args["table"])
    except BadInput as exc:
        raise BadInput(f"{where}: table: {exc.message}") from None


def parse_step(item: Any, where: str, training: dict[str, Any]) -> Step:
    if isinstance(item, str):
        kind, args = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        kind, args = next(iter(item.items()))
        args = expect_mapping(args, f"{where}: {kind}", optional=True)
    else:
        raise BadInput(f"{where}: expected a step kind ({', '.join(KINDS)}), alone or as "
                       "a mapping of one key to its settings, like {train: {spec: credit}}")  # fmt: skip
    if kind not in STEP_KEYS:
        raise BadInput(f"{where}: {kind!r} is not a step (steps: {', '.join(KINDS)})")
    at = f"{where}: {kind}"
    check_keys(args, STEP_KEYS[kind] | COMMON_KEYS, at)
    name = args.get("name", kind)
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"{at}: name: expected text, got {name!r}")
    retries = _int(args.get("retries", 0), f"{at}: retries", 0, 20)
    backoff = (
        _seconds(args["backoff"], f"{at}: backoff") if "backoff" in args else DEFAULT_BACKOFF_S
    )
    rest = {k: v for k, v in args.items() if k not in COMMON_KEYS}
    return Step(name, kind, _parse_step_args(kind, rest, at, training), retries, backoff)


def parse_pipeline(name: Any, d: Any, where: str, training: dict[str, Any],
                   raw_training: dict[str, Any]) -> Pipeline:  # fmt: skip
    try:
        name = check_name("pipeline", name)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}") from None
    d = expect_mapping(d, where)
    check_keys(d, PIPELINE_KEYS, where)
    items = d.get("steps")
    if not isinstance(items, list) or not items:
        raise BadInput(f"{where}: steps: expected a non-empty list of steps")
    steps = [parse_step(s, f"{where}: steps[{i}]", training) for i, s in enumerate(items)]
    seen: dict[str, int] = {}
    for i, s in enumerate(steps):
        at = f"{where}: steps[{i}]: {s.kind}"
        if s.name in seen:
            raise BadInput(f"{at}: the step name {s.name!r} is used twice (give one a name:)")
        need = NEEDS.get(s.kind)
        if need is not None and not any(p.kind == need for p in steps[:i]):
            raise BadInput(f"{at}: needs a {need} step before it")
        if s.kind in ("train", "training_set", "register", "release") and any(
            p.kind == s.kind for p in steps[:i]
        ):
            raise BadInput(f"{at}: a pipeline has one {s.kind} step")
        seen[s.name] = i
    schedule = parse_schedule(d["schedule"], f"{where}: schedule") if "schedule" in d else None
    on_new_data = None
    if "on_new_data" in d:
        at = f"{where}: on_new_data"
        nd = expect_mapping(d["on_new_data"], at)
        check_keys(nd, {"table", "rows", "freshness"}, at)
        if "table" not in nd or ("rows" in nd) == ("freshness" in nd):
            raise BadInput(f"{at}: give table and one of rows (a count of new rows) or "
                           "freshness (how much newer its latest event must be, like 1d)")  # fmt: skip
        on_new_data = {"table": _table(nd, at)}
        if "rows" in nd:
            on_new_data["rows"] = _int(nd["rows"], f"{at}: rows", 1, 10**12)
        else:
            on_new_data["freshness_s"] = _seconds(nd["freshness"], f"{at}: freshness")
    on_drift = None
    if "on_drift" in d:
        at = f"{where}: on_drift"
        dd = expect_mapping(d["on_drift"], at)
        check_keys(dd, {"model"}, at)
        if not isinstance(dd.get("model"), str):
            raise BadInput(f"{at}: model is missing (the model whose drift alerts start a run)")
        on_drift = {"model": dd["model"]}
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise BadInput(f"{where}: description must be text")
    specs = {s.args["spec"]: raw_training[s.args["spec"]] for s in steps if s.kind == "train"}
    return Pipeline(name, tuple(steps), schedule, on_new_data, on_drift, desc, specs, where)


def parse_pipelines(value: Any, where: str, raw_training: Any,
                    training: dict[str, Any]) -> dict[str, Pipeline]:  # fmt: skip
    """The ``pipelines:`` section; ``training`` holds the parsed training specs (the
    train steps name one), ``raw_training`` their YAML, which a run keeps."""
    out = {}
    raw = raw_training if isinstance(raw_training, dict) else {}
    for name, d in expect_mapping(value, where, optional=True).items():
        p = parse_pipeline(name, d, f"{where}: {name}", training, raw)
        out[p.name] = p
    return out
