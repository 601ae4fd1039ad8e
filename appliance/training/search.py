"""Hyperparameter search: random, grid and successive halving, on Optuna's samplers and
pruner, asked and told one trial at a time so that every trial is recorded as it ends.

Seeded: the same seed, space and data give the same trials in the same order (a time
limit can only cut the list short). Successive halving trains each configuration on a
growing share of its full effort (boosting rounds, epochs) — 1/9, 1/3, then all — and
Optuna's pruner stops those outside the best third at each rung.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from appliance.errors import BadInput
from appliance.training.gates import TASK_METRICS
from appliance.training.specs import Search

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae", "ece"}
RUNGS = (1 / 9, 1 / 3, 1.0)
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
    sampler = optuna.samplers.RandomSampler(seed=search.seed)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
              if search.strategy == "halving" else optuna.pruners.NopPruner())  # fmt: skip
    study = optuna.create_study(direction="minimize" if minimize else "maximize",
                                sampler=sampler, pruner=pruner)  # fmt: skip
    n_trials = search.trials
    if search.strategy == "grid":
        # The grid's points in a seeded order, queued up front: Optuna's GridSampler calls
        # study.stop() once the grid is used up, which raises outside study.optimize.
        points = grid(space)
        combos = list(itertools.product(*points.values()))
        n_trials = min(n_trials, len(combos))
        for i in np.random.default_rng(search.seed).permutation(len(combos))[:n_trials]:
            study.enqueue_trial(dict(zip(points, combos[i], strict=True)))
    outcome = Outcome(metric=metric)
    started = time.monotonic()
    for number in range(n_trials):
        if search.timeout_s is not None and time.monotonic() - started > search.timeout_s:
            outcome.stopped = "timeout"
            break
        trial = study.ask(dists)
        params = dict(trial.params)
        t0 = time.perf_counter()
        rungs = RUNGS if search.strategy == "halving" else (1.0,)
        status, metrics, score, budget, error = "completed", {}, None, 1.0, None
        try:
            for step, budget in enumerate(rungs):
                metrics = evaluate(params, budget)
                score = _score(metrics, metric)
                if len(rungs) > 1:
                    trial.report(score, step=3**step)  # resources 1, 3, 9
                    if budget < 1.0 and trial.should_prune():
                        status = "pruned"
                        break
        except BadInput as exc:  # a configuration the family refuses: recorded, not fatal
            status, error = "failed", exc.message
        state = {"completed": optuna.trial.TrialState.COMPLETE,
                 "pruned": optuna.trial.TrialState.PRUNED,
                 "failed": optuna.trial.TrialState.FAIL}[status]  # fmt: skip
        study.tell(trial, score if status == "completed" else None, state=state)
        result = Trial(number, params, score, metrics, status, time.perf_counter() - t0,
                       budget, error)  # fmt: skip
        outcome.trials.append(result)
        on_trial(result)
        if progress is not None:
            progress(number + 1, n_trials)
    done = [t for t in outcome.trials if t.status == "completed"]
    if not done:
        reasons = {t.error for t in outcome.trials if t.error}
        raise BadInput(f"the search completed no trial ({len(outcome.trials)} tried"
                       + (f"; {sorted(reasons)[0]}" if reasons else "") + ")")  # fmt: skip
    pick = min if minimize else max
    outcome.best = pick(
        done, key=lambda t: (t.score, -t.number) if not minimize else (t.score, t.number)
    )
    return outcome


def _score(metrics: dict[str, Any], metric: str) -> float:
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        raise BadInput(f"metric {metric!r} has no value here (metrics: {', '.join(metrics)})")
    return float(value)
