"""Gates a trained model must pass before it is registered as anything but rejected.

The spec's ``gates`` section, every part and every key optional (null or false turns
a gate off, true or a missing part or key takes the defaults shown)::

    baseline:    {metric: log_loss, margin: 0.0}   # regression: rmse
    champion:    {metric: roc_auc, margin: 0.0}    # regression: rmse
    fairness:    {demographic_parity: 0.2, equalized_odds: 0.2}
    robustness:  {noise: 0.05, missing: 0.1, unseen: 0.1}
    calibration: {ece: 0.1}                        # binary classification only

Baseline and champion: the model's hold-out metric must beat the other's by at least
``margin`` (a tie passes at margin 0; a negative margin tolerates a small loss).
Fairness: the differences of ``evaluation.fairness`` at most the thresholds, when a
sensitive attribute is given. Robustness: the ``mean_abs_change`` of each perturbation
in ``evaluation.robustness`` at most its threshold. Calibration: hold-out ECE at most
``ece``. A gate whose value cannot be computed (an AUC on a one-class hold-out) fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.errors import BadInput

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae", "ece"})
HIGHER_IS_BETTER = frozenset({"roc_auc", "pr_auc", "r2", "accuracy", "f1"})
TASK_METRICS = {
    "binary": ("log_loss", "roc_auc", "brier", "pr_auc", "accuracy", "f1"),
    "regression": ("rmse", "mae", "r2"),
}
COMPARABLE = frozenset(TASK_METRICS["binary"] + TASK_METRICS["regression"])
DEFAULT_METRIC = {"baseline": {"binary": "log_loss", "regression": "rmse"},
                  "champion": {"binary": "roc_auc", "regression": "rmse"}}  # fmt: skip
DEFAULTS: dict[str, dict[str, Any]] = {
    "baseline": {"metric": None, "margin": 0.0},  # metric None: the task's default
    "champion": {"metric": None, "margin": 0.0},
    "fairness": {"demographic_parity": 0.2, "equalized_odds": 0.2},
    "robustness": {"noise": 0.05, "missing": 0.1, "unseen": 0.1},
    "calibration": {"ece": 0.1},
}
RATE_LIMITS = {"demographic_parity", "equalized_odds", "ece"}  # thresholds within [0, 1]


@dataclass(frozen=True)
class GateConfig:
    """Resolved gate settings: a part is None when turned off, and so is a single
    threshold inside fairness, robustness or calibration."""

    baseline: dict[str, Any] | None
    champion: dict[str, Any] | None
    fairness: dict[str, float | None] | None
    robustness: dict[str, float | None] | None
    calibration: dict[str, float | None] | None

    @classmethod
    def from_spec(cls, d: dict | None, task: str | None = None) -> GateConfig:
        """Defaults merged with the spec's ``gates`` section, checked. With ``task`` the
        metrics are checked against it (they are again when the gates run)."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise BadInput(f"gates must be a mapping, got {type(d).__name__}")
        _unknown("gates", d, DEFAULTS)
        parts = {name: _part(name, d.get(name, True)) for name in DEFAULTS}
        config = cls(**parts)
        if task is not None:
            asked = d.get("calibration") not in (None, False)  # not just the default
            ece = parts["calibration"] and parts["calibration"]["ece"]
            config.check(task, explicit_calibration=asked and ece is not None)
        return config

    def check(self, task: str, explicit_calibration: bool = False) -> None:
        if task not in TASK_METRICS:
            raise BadInput(f"task must be one of {', '.join(TASK_METRICS)}, got {task!r}")
        for name in ("baseline", "champion"):
            part = getattr(self, name)
            if part and part["metric"] and part["metric"] not in TASK_METRICS[task]:
                raise BadInput(f"gates.{name}.metric {part['metric']!r} does not apply to "
                               f"{task} (use one of {', '.join(TASK_METRICS[task])})")  # fmt: skip
        if task == "regression" and explicit_calibration:
            raise BadInput("gates.calibration applies to binary classification only")

    def metric(self, name: str, task: str) -> str:
        return getattr(self, name)["metric"] or DEFAULT_METRIC[name][task]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DEFAULTS}


def _unknown(where: str, d: dict, known: dict) -> None:
    extra = sorted(str(k) for k in d if k not in known)
    if extra:
        raise BadInput(f"{where}: unknown key{'s' if len(extra) > 1 else ''} "
                       f"{', '.join(map(repr, extra))} (known: {', '.join(known)})")  # fmt: skip


def _number(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or abs(v) == float("inf"):
        raise BadInput(f"{where} must be a finite number, got {v!r}")
    return float(v)


def _part(name: str, v: Any) -> dict[str, Any] | None:
    where = f"gates.{name}"
    if v is None or v is False:
        return None
    if v is True:
        v = {}
    if not isinstance(v, dict):
        raise BadInput(f"{where} must be a mapping, true, false or null, got {v!r}")
    _unknown(where, v, DEFAULTS[name])
    out = dict(DEFAULTS[name]) | v
    if name in ("baseline", "champion"):
        metric = out["metric"]
        if metric is not None and metric not in COMPARABLE:
            known = ", ".join(sorted(COMPARABLE))
            raise BadInput(f"{where}.metric must be one of {known}, got {metric!r}")
        out["margin"] = _number(f"{where}.margin", out["margin"])
        return out
    for key, limit in out.items():
        if limit is None or limit is False:
            out[key] = None
            continue
        if limit is True:
            limit = DEFAULTS[name][key]
        limit = _number(f"{where}.{key}", limit)
        top = 1.0 if key in RATE_LIMITS else float("inf")
        if not 0.0 <= limit <= top:
            raise BadInput(f"{where}.{key} must lie in [0, {top:g}], got {limit:g}")
        out[key] = limit
    return out


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _result(gate: str, metric: str, value: Any, threshold: Any, op: str,
            passed: bool, detail: str) -> dict[str, Any]:  # fmt: skip
    return {"gate": gate, "metric": metric, "value": value, "threshold": threshold,
            "op": op, "passed": bool(passed), "detail": detail}  # fmt: skip


def _compare(gate: str, metric: str, value: Any, other: Any, margin: float, who: str):
    """The model's ``value`` against ``other``'s, needing an improvement of ``margin``."""
    lower = metric in LOWER_IS_BETTER
    op = "<=" if lower else ">="
    label = metric.replace("_", " ")
    if value is None or other is None:
        whose = "the model's" if value is None else f"{who}'s"
        return _result(gate, metric, value, None, op, False,
                       f"{whose} {label} is undefined on this hold-out")  # fmt: skip
    threshold = other - margin if lower else other + margin
    gain = other - value if lower else value - other
    passed = value <= threshold if lower else value >= threshold
    need = f" (needs {_fmt(margin)})" if margin else ""
    verb = "beats" if gain > 0 else ("ties" if gain == 0 else "trails")
    by = f" by {_fmt(abs(gain))}" if gain else ""
    detail = f"{verb} {who}{by} on {label}: {_fmt(value)} vs {_fmt(other)}{need}"
    return _result(gate, metric, float(value), float(threshold), op, passed, detail)


def _at_most(gate: str, metric: str, value: Any, limit: float, what: str):
    if value is None:
        return _result(gate, metric, None, limit, "<=", False, f"{what} is undefined")
    passed = value <= limit
    word = "within" if passed else "above"
    detail = f"{what} {_fmt(value)} is {word} the limit {_fmt(limit)}"
    return _result(gate, metric, float(value), limit, "<=", passed, detail)


def run_gates(
    config: GateConfig,
    task: str,
    holdout: dict[str, Any],
    baseline: dict[str, Any],
    champion_holdout: dict[str, Any] | None = None,
    fairness: dict[str, Any] | None = None,
    robustness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The verdict: every enabled gate's result, and whether all passed.

    ``holdout``, ``baseline`` and ``champion_holdout`` are metrics dicts of the same
    hold-out (``evaluation.metrics`` / ``evaluation.baseline``); ``champion_holdout`` is
    None without a champion. ``fairness`` is None without a sensitive attribute and
    ``robustness`` None when it was not measured; their gates are then left out.
    """
    config.check(task)
    results = []
    if config.baseline:
        metric = config.metric("baseline", task)
        who = f"the {baseline.get('kind', 'baseline')}"
        results.append(_compare("baseline", metric, holdout.get(metric), baseline.get(metric),
                                config.baseline["margin"], who))  # fmt: skip
    if config.champion:
        metric = config.metric("champion", task)
        if champion_holdout is None:
            op = "<=" if metric in LOWER_IS_BETTER else ">="
            value = holdout.get(metric)
            results.append(_result("champion", metric, value, None, op, True, "no champion yet"))
        else:
            results.append(_compare("champion", metric, holdout.get(metric),
                                    champion_holdout.get(metric), config.champion["margin"],
                                    "the champion"))  # fmt: skip
    if config.fairness and fairness is not None:
        on = f" across {fairness['sensitive']}" if fairness.get("sensitive") else ""
        for key, metric in (("demographic_parity", "demographic_parity_difference"),
                            ("equalized_odds", "equalized_odds_difference")):  # fmt: skip
            if config.fairness[key] is not None:
                what = f"{key.replace('_', ' ')} difference{on}"
                results.append(_at_most(key, metric, fairness.get(metric),
                                        config.fairness[key], what))  # fmt: skip
    if config.robustness and robustness is not None:
        for key in ("noise", "missing", "unseen"):
            limit = config.robustness[key]
            if limit is None:
                continue
            gate, change = f"robustness_{key}", robustness.get(key)
            if change is None:
                kind = "numeric" if key == "noise" else "categorical"
                results.append(_result(gate, "mean_abs_change", None, limit, "<=", True,
                                       f"no {kind} inputs to perturb"))  # fmt: skip
            else:
                what = f"mean change of the predictions under {_PERTURBATION[key]}"
                results.append(_at_most(gate, "mean_abs_change", change["mean_abs_change"],
                                        limit, what))  # fmt: skip
    if config.calibration and task == "binary" and config.calibration["ece"] is not None:
        results.append(_at_most("calibration", "ece", holdout.get("ece"),
                                config.calibration["ece"], "expected calibration error"))  # fmt: skip
    return {"passed": all(r["passed"] for r in results), "results": results}


_PERTURBATION = {"noise": "input noise", "missing": "missing values",
                 "unseen": "unseen categories"}  # fmt: skip


def failed_gates(verdict: dict[str, Any]) -> list[str]:
    """The gates a verdict failed (versions registered before verdicts had results keep
    their gates as name -> bool)."""
    if "results" in verdict:
        return [g["gate"] for g in verdict["results"] if not g["passed"]]
    return [k for k, v in verdict.items() if k != "passed" and not v]
