"""Hyperparameter search: random, grid and successive halving. Optuna draws the
configurations (its seeded random sampler; grid points queued in a seeded order) and
keeps the study; every trial is recorded as it ends.

Seeded: the same seed, space and data give the same trials in the same order (a time
limit can only cut the list short). Successive halving (synchronous, as scikit-learn's
HalvingRandomSearchCV) fits every configuration with 1/9 of its full effort (boosting
rounds, epochs), keeps the best third at 1/3, and the best third of those at full
effort; the others are recorded as pruned.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna

from appliance.errors import BadInput
from appliance.training.gates import TASK_METRICS
from appliance.training.specs import Search

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae", "ece"}
RUNGS = (1 / 9, 1 / 3, 1.0)
HALVING = 3  # each rung keeps the best third
GRID_POINTS = 4  # values per continuous dimension of a grid


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    score: float | None
    metrics: dict[str, Any]
    status: str  # "completed" | "pruned" | "failed"
    duration_s: float
    budget: float
    error: str | None = None
    started_at: str | None = None  # ISO time of its first fit


@dataclass
class Outcome:
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    metric: str = "roc_auc"
    stopped: str = "trials"  # or "timeout"


def default_metric(task: str) -> str:
    return "roc_auc" if task == "binary" else "rmse"


def distributions(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, dist in space.items():
        kind, args = next(iter(dist.items()))
        if kind == "int":
            out[name] = optuna.distributions.IntDistribution(args[0], args[1])
        elif kind == "uniform":
            out[name] = optuna.distributions.FloatDistribution(args[0], args[1])
        elif kind == "log_uniform":
            out[name] = optuna.distributions.FloatDistribution(args[0], args[1], log=True)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(args)
    return out


def grid(space: dict[str, dict[str, Any]]) -> dict[str, list]:
    """A finite grid over the space: choices as given, numbers at a few even points."""
    out: dict[str, list] = {}
    for name, dist in space.items():
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            out[name] = list(args)
        elif kind == "int":
            out[name] = sorted({int(round(v)) for v in np.linspace(args[0], args[1], GRID_POINTS)})
        elif kind == "uniform":
            out[name] = [float(v) for v in np.linspace(args[0], args[1], GRID_POINTS)]
        else:
            out[name] = [float(v) for v in np.geomspace(args[0], args[1], GRID_POINTS)]
    return out


def run(
    search: Search,
    space: dict[str, dict[str, Any]],
    task: str,
    evaluate: Callable[[dict[str, Any], float], dict[str, Any]],
    on_trial: Callable[[Trial], None] = lambda t: None,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Try configurations; ``evaluate(params, budget)`` fits one and returns its
    validation metrics. Returns every trial and the best completed one."""
    metric = search.metric or default_metric(task)
    if metric not in TASK_METRICS.get(task, ()):
        raise BadInput(f"search metric {metric!r} does not apply to {task} (use one of "
                       f"{', '.join(TASK_METRICS.get(task, ()))})")  # fmt: skip
    minimize = metric in LOWER_IS_BETTER
    if not space:
        raise BadInput("the search space is empty: give search.space in the spec")
    dists = distributions(space)
    study = optuna.create_study(direction="minimize" if minimize else "maximize",
                                sampler=optuna.samplers.RandomSampler(seed=search.seed))  # fmt: skip
    n_trials = search.trials
    if search.strategy == "grid":
        # The grid's points in a seeded order, queued up front: Optuna's GridSampler calls
        # study.stop() once the grid is used up, which raises outside study.optimize.
        points = grid(space)
        combos = list(itertools.product(*points.values()))
        n_trials = min(n_trials, len(combos))
        for i in np.random.default_rng(search.seed).permutation(len(combos))[:n_trials]:
            study.enqueue_trial(dict(zip(points, combos[i], strict=True)))
    # Every configuration is drawn up front: halving's first rung sees them all.
    asked = [study.ask(dists) for _ in range(n_trials)]
    rungs = RUNGS if search.strategy == "halving" else (1.0,)
    total, alive_n = 0, n_trials
    for budget in rungs:  # evaluations planned, for the progress bar
        total += alive_n
        alive_n = max(1, math.ceil(alive_n / HALVING)) if budget < 1.0 else alive_n
    state = {n: {"metrics": {}, "score": None, "budget": None, "seconds": 0.0, "error": None,
                 "started": None} for n in range(n_trials)}  # fmt: skip
    outcome = Outcome(metric=metric)
    started, evaluated = time.monotonic(), 0

    def finish(number: int, status: str) -> None:
        st = state[number]
        tell = {"completed": optuna.trial.TrialState.COMPLETE,
                "pruned": optuna.trial.TrialState.PRUNED,
                "failed": optuna.trial.TrialState.FAIL}[status]  # fmt: skip
        study.tell(asked[number], st["score"] if status == "completed" else None, state=tell)
        result = Trial(number, dict(asked[number].params), st["score"], st["metrics"], status,
                       st["seconds"], st["budget"] or 0.0, st["error"], st["started"])  # fmt: skip
        outcome.trials.append(result)
        on_trial(result)

    alive = list(range(n_trials))
    for budget in rungs:
        scored = []
        for number in alive:
            if search.timeout_s is not None and time.monotonic() - started > search.timeout_s:
                outcome.stopped = "timeout"
                break
            st, t0 = state[number], time.perf_counter()
            st["started"] = st["started"] or datetime.now(UTC).isoformat(timespec="seconds")
            try:
                st["metrics"] = evaluate(dict(asked[number].params), budget)
                st["score"], st["budget"] = _score(st["metrics"], metric), budget
                scored.append(number)
            except BadInput as exc:  # a configuration the family refuses: recorded, not fatal
                st["error"] = exc.message
                finish(number, "failed")
            finally:
                st["seconds"] += time.perf_counter() - t0
                evaluated += 1
                if progress is not None:
                    progress(evaluated, total)
        if outcome.stopped == "timeout" or budget == 1.0:
            break
        # successive halving: the best third goes on to three times the effort
        ranked = sorted(
            scored, key=lambda n: (state[n]["score"] if minimize else -state[n]["score"], n)
        )
        alive = ranked[: max(1, math.ceil(len(ranked) / HALVING))]
        for number in ranked[len(alive) :]:
            finish(number, "pruned")
    for number in range(n_trials):  # what the last rung (or the clock) left
        st = state[number]
        if st["score"] is not None and all(t.number != number for t in outcome.trials):
            finish(number, "completed" if st["budget"] == 1.0 else "pruned")
    outcome.trials.sort(key=lambda t: t.number)
    done = [t for t in outcome.trials if t.status == "completed"]
    if not done:  # cut short before any full fit: the furthest-trained ones compete
        furthest = max((t.budget for t in outcome.trials if t.score is not None), default=None)
        done = [t for t in outcome.trials if t.score is not None and t.budget == furthest]
    if not done:
        reasons = {t.error for t in outcome.trials if t.error}
        raise BadInput(f"the search completed no trial ({len(outcome.trials)} tried"
                       + (f"; {sorted(reasons)[0]}" if reasons else "") + ")")  # fmt: skip
    outcome.best = min(done, key=lambda t: (t.score if minimize else -t.score, t.number))
    return outcome


def _score(metrics: dict[str, Any], metric: str) -> float:
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        raise BadInput(f"metric {metric!r} has no value here (metrics: {', '.join(metrics)})")
    return float(value)
