"""Training: read a feature table or a registered training set, fit one pipeline and one
model family (searching its hyperparameters when the spec asks), evaluate on a hold-out,
gate, and register the version — rejected when a gate fails. The model that is evaluated
is the one that ships.

One spec drives it (``specs.Spec``): declared in the workspace and run with
``falaj train --spec NAME``, or built from ``falaj train``'s flags. Every search trial
and the final fit are recorded as runs in control.db.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import appliance
from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput, FalajError, NotFound
from appliance.features.training_sets import TrainingSets
from appliance.monitoring import reference
from appliance.names import check_name
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.control import now
from appliance.training import data as training_data
from appliance.training import evaluation, families, search, splits
from appliance.training.gates import GateConfig, run_gates
from appliance.training.pipeline import Pipeline, columns_from_arrow
from appliance.training.specs import Spec

if TYPE_CHECKING:  # the registry loads models, whose families live here
    from appliance.registry import Registry
    from appliance.registry.model import Model

__all__ = ["Runs", "TrainingRun", "TrainingService"]

VALIDATION_SHARE = 0.2  # of the training rows, for search scores and early stopping


@dataclass
class TrainingRun:
    model: Model
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    card: dict[str, Any]  # what the model card says beyond metrics and lineage

    @property
    def gates_passed(self) -> bool:
        return bool(self.metrics["gates"]["passed"])

    @property
    def status(self) -> str:
        return "ready" if self.gates_passed else "rejected"


class Runs:
    """Training runs as recorded: searches, their trials, and final fits. A search whose
    process died (killed, a power cut) reads as ``interrupted``: its trials stay."""

    def __init__(self, control: ControlStore) -> None:
        self.control = control

    def list(self, actor: Actor, model: str | None = None, parent: str | None = None) -> list[dict]:
        require(actor, "model.read")
        return [_interrupted(r) for r in self.control.runs(model, parent)]

    def get(self, run_id: str, actor: Actor) -> dict[str, Any]:
        require(actor, "model.read")
        run = self.control.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        return _interrupted(run)


def _interrupted(run: dict[str, Any]) -> dict[str, Any]:
    """A running search whose process is gone is interrupted (it records its pid and host)."""
    owner = run["metrics"].get("process") if run["status"] == "running" else None
    if owner is None or owner.get("host") != socket.gethostname():
        return run
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return run | {"status": "interrupted"}
    except (PermissionError, ValueError, TypeError):
        pass
    return run


class TrainingService:
    def __init__(
        self,
        features: FeatureStore,
        control: ControlStore,
        registry: Registry,
        settings: dict,
        training_sets: TrainingSets | None = None,
    ) -> None:
        self.features = features
        self.control = control
        self.registry = registry
        self.settings = settings
        self.training_sets = training_sets

    # -- entry points ----------------------------------------------------------

    def train(self, table: str, label: str, name: str, actor: Actor,
              progress: Callable[[int, int], None] | None = None, **options: Any) -> dict:  # fmt: skip
        """Train on a feature table (``options``: any ``Spec`` field, e.g. family)."""
        return self.run(self._spec(name, label, options, table=table), actor, progress)

    def train_on_set(self, ref: str, label: str, name: str, actor: Actor,
                     progress: Callable[[int, int], None] | None = None, **options: Any) -> dict:  # fmt: skip
        """Train on a registered training set, named by its id or its file (refused if
        the file changed since it was registered)."""
        return self.run(self._spec(name, label, options, training_set=ref), actor, progress)

    def _spec(self, name: str, label: str, options: dict, **source: str) -> Spec:
        check_name("model", name)
        options = {k: v for k, v in options.items() if v is not None}
        if "family" in options:
            families.get(options["family"])
        if "gates" in options:
            GateConfig.from_spec(options["gates"])
        if options.get("search") is not None and "seed" not in options:
            options["seed"] = options["search"].seed
        return Spec(name=name, label=label, model=name, where="train", **source,
                    **{"holdout": self.settings["holdout_fraction"]} | options)  # fmt: skip

    def train_spec(
        self,
        spec_name: str,
        workspace: str | Path,
        actor: Actor,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict:
        """Run a spec declared in the workspace file."""
        from appliance.features.workspace import load

        ws = load(workspace)
        if spec_name not in ws.training:
            raise BadInput(f"{workspace}: no training spec {spec_name!r} "
                           f"(specs: {', '.join(ws.training) or 'none'})")  # fmt: skip
        return self.run(ws.training[spec_name], actor, progress)

    # -- one training run ------------------------------------------------------

    def run(
        self,
        spec: Spec,
        actor: Actor,
        progress: Callable[[int, int], None] | None = None,
        *,
        until: str | None = None,
    ) -> dict[str, Any]:
        """Search, fit, evaluate, gate and register. A pipeline's steps stop early:
        ``until="search"`` returns the chosen params (and the search's run id);
        ``until="evaluate"`` fits with ``spec.params`` and returns the metrics and the
        gates' verdict, registering nothing (the fit is seeded: the same params give the
        same model when the register step fits again)."""
        require(actor, "model.train")
        if until not in (None, "search", "evaluate"):
            raise ValueError(f"until={until!r}: expected 'search' or 'evaluate'")
        name = check_name("model", spec.model_name)
        started, t0 = now(), time.perf_counter()
        data = training_data.load(spec, self.features, self.training_sets, actor)
        task, y, seed = data.task, data.y, spec.seed
        if spec.split == "time":
            train_idx, test_idx = splits.time_split(data.times, spec.holdout)
        else:
            train_idx, test_idx = splits.stratified_split(y, spec.holdout, seed)
        columns = columns_from_arrow(data.table, data.inputs)
        cols_train, cols_test = _take(columns, train_idx), _take(columns, test_idx)
        y_train, y_test = y[train_idx], y[test_idx]
        _both_classes(task, data.where, y_train, y_test)
        pipeline, X_train = Pipeline.fit_transform(cols_train, data.inputs, y_train, task, seed)
        X_test = pipeline.transform(cols_test)

        family = families.get(spec.family)
        params = family.defaults(task) | spec.params
        if spec.family == "linear" and task == "binary" and "C" not in spec.params:
            params["C"] = self.settings["l2_c"]
        folds = self._folds(spec, task, y_train, seed)
        fit_idx, valid_idx = folds[0]
        early_stops = spec.family != "linear"  # linear fits have no rounds to stop

        def evaluate(trial: dict[str, Any], budget: float) -> dict[str, Any]:
            scores = []
            for a, v in folds:
                est = family(task=task, **(params | trial)).fit(
                    X_train[a], y_train[a], seed=seed, X_valid=X_train[v] if early_stops else None,
                    y_valid=y_train[v] if early_stops else None, budget=budget)  # fmt: skip
                scores.append(evaluation.train_metrics(task, y_train[v], est.predict(X_train[v]),
                                                       spec.threshold))  # fmt: skip
            return _mean_metrics(scores)

        search_id, outcome = None, None
        if spec.search is not None:
            search_id = _run_id("search")
            self._put_run({"id": search_id, "model": name, "spec": spec.name, "kind": "search",
                           "family": spec.family, "params": {"strategy": spec.search.strategy,
                           "trials": spec.search.trials, "space": spec.search.space or family.space(task)},
                           "metrics": {"process": {"pid": os.getpid(), "host": socket.gethostname()}},
                           "status": "running", "seed": seed, "started_at": started,
                           "duration_s": 0.0, "created_by": str(actor)})  # fmt: skip

            def record(trial: search.Trial) -> None:
                self._put_run({"id": f"{search_id}-t{trial.number}", "model": name,
                               "spec": spec.name, "parent": search_id, "kind": "trial",
                               "family": spec.family, "params": params | trial.params,
                               "metrics": trial.metrics | {"budget": trial.budget}
                               | ({"error": trial.error} if trial.error else {}),
                               "status": trial.status, "seed": seed,
                               "started_at": trial.started_at or now(),
                               "duration_s": trial.duration_s, "created_by": str(actor)})  # fmt: skip
                faults.point("search.trial_recorded")

            try:
                outcome = search.run(spec.search, spec.search.space or family.space(task), task,
                                     evaluate, record, progress)  # fmt: skip
            except BaseException as exc:  # the run is not left "running"
                self._put_run(self.control.run(search_id) | {
                    "status": "failed", "duration_s": time.perf_counter() - t0,
                    "metrics": {"error": getattr(exc, "message", None) or type(exc).__name__}})  # fmt: skip
                raise
            params = params | outcome.best.params
        if until == "search":
            return self._searched(spec, name, task, params, search_id, outcome, t0)

        final_fit, final_valid = (fit_idx, valid_idx) if early_stops else (slice(None), None)
        estimator = family(task=task, **params).fit(
            X_train[final_fit], y_train[final_fit], seed=seed,
            X_valid=None if final_valid is None else X_train[final_valid],
            y_valid=None if final_valid is None else y_train[final_valid])  # fmt: skip
        from appliance.registry.model import Model

        model = Model(name, 0, pipeline, estimator, task, spec.sensitive, data.online,
                      entities=data.entities)  # fmt: skip
        metrics = self._evaluate(spec, data, model, (X_train, y_train), (X_test, y_test),
                                 test_idx, cols_test)  # fmt: skip
        if outcome is not None:
            metrics["search"] = {"id": search_id, "strategy": spec.search.strategy,
                                 "metric": outcome.metric, "trials": len(outcome.trials),
                                 "best_trial": outcome.best.number, "best_score": outcome.best.score,
                                 "stopped_by": outcome.stopped}  # fmt: skip
        lineage = data.lineage | {
            "spec": spec.describe(),
            "features": model.features,
            "family": spec.family,
            "params": estimator.params_,
            "seed": seed,
            "device": estimator.device_,
            "code_version": code_version(),
            "split": {
                "kind": spec.split,
                "holdout": spec.holdout,
                "holdout_rows": int(len(test_idx)),
                "holdout_from_us": int(data.times[test_idx].min()),
            },  # fmt: skip
        }
        if until == "evaluate":
            return {"name": name, "family": spec.family, "task": task, "metrics": metrics,
                    "params": estimator.params_, "gates_passed": bool(metrics["gates"]["passed"])}  # fmt: skip
        model.reference = reference.build(model, cols_train, model.predict_matrix(X_test),
                                          metrics["holdout"], seed)  # fmt: skip
        run = TrainingRun(model, metrics, lineage,
                          {"intended_use": spec.intended_use, "threshold": spec.threshold})  # fmt: skip
        version = self.registry.register(run, actor)
        duration = time.perf_counter() - t0
        final_id = _run_id("final")
        self._put_run({"id": final_id, "model": name, "spec": spec.name, "parent": search_id,
                       "kind": "final", "family": spec.family, "params": estimator.params_,
                       "metrics": {"holdout": _flat(metrics["holdout"]),
                                   "gates_passed": run.gates_passed},
                       "status": "registered" if run.gates_passed else "rejected", "seed": seed,
                       "device": estimator.device_, "started_at": started,
                       "duration_s": duration, "version": version, "created_by": str(actor)})  # fmt: skip
        if search_id is not None:
            self._put_run(self.control.run(search_id) | {
                "status": "completed", "duration_s": duration, "version": version,
                "metrics": {outcome.metric: outcome.best.score, "trials": len(outcome.trials),
                            "best_trial": outcome.best.number, "stopped_by": outcome.stopped}})  # fmt: skip
        return {
            "name": name,
            "version": version,
            "status": run.status,
            "family": spec.family,
            "task": task,
            "run": final_id,
            "search": search_id,
            "metrics": metrics,
            "gates_passed": run.gates_passed,
        } | ({"training_set": lineage["training_set"]["id"]} if "training_set" in lineage else {})

    def _searched(self, spec, name, task, params, search_id, outcome, t0) -> dict[str, Any]:
        """A search's outcome without a final fit (a pipeline's train step)."""
        result = {"name": name, "family": spec.family, "task": task, "params": params,
                  "search": search_id}  # fmt: skip
        if outcome is not None:
            summary = {outcome.metric: outcome.best.score, "trials": len(outcome.trials),
                       "best_trial": outcome.best.number, "stopped_by": outcome.stopped}  # fmt: skip
            self._put_run(self.control.run(search_id) | {
                "status": "completed", "duration_s": time.perf_counter() - t0,
                "metrics": summary})  # fmt: skip
            result["best"] = summary | {"metric": outcome.metric}
        return result

    # -- parts -----------------------------------------------------------------

    def _evaluate(self, spec, data, model, train, test, test_idx, cols_test) -> dict[str, Any]:
        """Hold-out and training metrics, the baseline, the champion on the same hold-out,
        fairness, robustness, and the gates' verdict over them."""
        (X_train, y_train), (X_test, y_test) = train, test
        task, name, seed = data.task, model.name, spec.seed
        p_test, p_train = model.predict_matrix(X_test), model.predict_matrix(X_train)
        metrics: dict[str, Any] = {
            "task": task,
            "holdout": evaluation.metrics(task, y_test, p_test, spec.threshold),
            "train": evaluation.train_metrics(task, y_train, p_train, spec.threshold),
            "baseline": evaluation.baseline(task, y_train, y_test),
        }
        metrics["champion"] = self._champion(name, data, test_idx, y_test, spec.threshold)
        metrics["fairness"] = None
        if data.sensitive is not None and task == "binary":
            metrics["fairness"] = evaluation.fairness(y_test, p_test, data.sensitive[test_idx],
                                                      spec.threshold, spec.sensitive)  # fmt: skip
        metrics["robustness"] = evaluation.robustness(model.predict_columns, cols_test, data.inputs,
                                                      seed=seed, task=task, threshold=spec.threshold)  # fmt: skip
        metrics["gates"] = run_gates(
            GateConfig.from_spec(spec.gates, task),
            task, metrics["holdout"], metrics["baseline"],
            None if metrics["champion"] is None else metrics["champion"]["holdout"],
            metrics["fairness"], metrics["robustness"],
        )  # fmt: skip
        return metrics

    def _folds(self, spec: Spec, task: str, y_train: np.ndarray, seed: int) -> list:
        strat = y_train if task == "binary" else None
        if spec.split == "kfold":
            return splits.kfold(len(y_train), spec.k, seed, y=strat)
        if spec.split == "time":  # training rows are in time order: validate on the latest
            fit_idx, valid_idx = splits.time_split(np.arange(len(y_train)), VALIDATION_SHARE)
        else:
            fit_idx, valid_idx = splits.stratified_split(y_train, VALIDATION_SHARE, seed)
        return [(fit_idx, valid_idx)]

    def _champion(self, name, data, test_idx, y_test, threshold) -> dict[str, Any] | None:
        """The current champion (the ``champion`` alias, else the live version) scored on
        this run's hold-out, or None when there is none or it cannot read these rows."""
        version = self.registry.champion_version(name)
        if version is None:
            return None
        try:
            champion = self.registry.load(name, version, SYSTEM)
            rows = data.table.take(test_idx)
            missing = [f for f in champion.features if f not in rows.column_names]
            if missing:
                return {"version": version, "holdout": None,
                        "detail": f"the hold-out lacks its input {missing[0]!r}"}  # fmt: skip
            p = champion.predict_columns(columns_from_arrow(rows, champion.inputs))
            if champion.task != data.task:
                return {"version": version, "holdout": None, "detail": "a different task"}
            return {
                "version": version,
                "holdout": evaluation.metrics(data.task, y_test, p, threshold),
            }
        except FalajError as exc:
            return {"version": version, "holdout": None, "detail": exc.message}

    def _put_run(self, run: dict[str, Any]) -> None:
        with self.control.transaction() as tx:
            tx.put_run(run)


def _take(columns: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in columns.items()}


def _both_classes(task: str, where: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    if task != "binary":
        return
    for part, yy in (("training", y_train), ("hold-out", y_test)):
        if len(yy) == 0 or yy.min() == yy.max():
            raise BadInput(f"{where}: the {part} rows hold only label "
                           f"{yy[0] if len(yy) else 'none'}; both classes are needed")  # fmt: skip


def _mean_metrics(scores: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, value in scores[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            vals = [s[key] for s in scores if s.get(key) is not None]
            out[key] = float(np.mean(vals)) if vals else None
    return out


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | None)}


def _run_id(kind: str) -> str:
    return f"{kind[:1]}{time.strftime('%Y%m%d')}-{uuid.uuid4().hex[:10]}"


@cache
def code_version() -> str:
    """The Falaj release and a SHA-256 over the source of what trains and predicts."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in ("appliance/training", "appliance/registry", "kernels"):
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return f"falaj {appliance.__version__} src:{h.hexdigest()[:16]}"
