"""Training: read a feature table, fit, evaluate against a baseline, gate, and hand the
run to the registry. The model that is evaluated is the one that ships."""

from __future__ import annotations

from typing import Any

from appliance.auth import Actor, require
from appliance.names import check_name
from appliance.registry import Registry
from appliance.stores import FeatureStore
from appliance.training.logistic import TrainingRun, train

__all__ = ["TrainingRun", "TrainingService"]


class TrainingService:
    def __init__(self, features: FeatureStore, registry: Registry, settings: dict) -> None:
        self.features = features
        self.registry = registry
        self.settings = settings

    def train(self, table: str, label: str, name: str, actor: Actor) -> dict[str, Any]:
        require(actor, "model.train")
        check_name("model", name)
        run = train(
            self.features, table, label, name,
            holdout_fraction=self.settings["holdout_fraction"], C=self.settings["l2_c"],
        )  # fmt: skip
        version = self.registry.register(run, actor)
        return {
            "name": name,
            "version": version,
            "metrics": run.metrics,
            "gates_passed": run.gates_passed,
        }
