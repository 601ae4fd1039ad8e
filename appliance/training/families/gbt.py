"""The gbt family: gradient-boosted trees with LightGBM, saved in its own text format.

LightGBM is trained through ``lgb.train`` on a ``Booster`` (never the scikit-learn wrapper
or a pickle) with ``deterministic=True`` and a fixed histogram layout, so the same seed,
data and thread count give the same trees. ``n_estimators`` is the number of boosting rounds;
``budget`` scales it and, given a validation set, training stops once the validation loss
has not improved for ``early_stopping_rounds`` rounds, keeping the best round's trees.

Device: when the device setting asks for the GPU (``cuda``, or ``auto`` with a GPU that
answers), training tries LightGBM's OpenCL build (``device_type="gpu"``, single
precision histograms) and falls back to the CPU when LightGBM refuses, recording where
it ran in ``device_``. Prediction always runs on the CPU from the saved trees.
"""

from __future__ import annotations

import math
from typing import Any

import lightgbm as lgb
import numpy as np

from appliance.training.families import Estimator, Param, bundle_text, log, threads, wants_gpu

_TREES = {
    "num_leaves": Param("int", 31, lo=2, hi=131072, search={"int": [8, 128]}),
    "learning_rate": Param(
        "float", 0.05, lo=0, lo_open=True, hi=1.0, search={"log_uniform": [0.01, 0.3]}
    ),
    "n_estimators": Param("int", 300, lo=1, hi=100_000),
    "min_child_samples": Param("int", 20, lo=1, search={"int": [5, 100]}),
    "feature_fraction": Param(
        "float", 0.9, lo=0, lo_open=True, hi=1.0, search={"uniform": [0.5, 1.0]}
    ),
    "lambda_l2": Param("float", 1.0, lo=0, search={"log_uniform": [0.001, 10.0]}),
    "early_stopping_rounds": Param("int", 50, lo=1),
}
PARAMS = {"binary": _TREES, "regression": _TREES}
OBJECTIVE = {"binary": "binary", "regression": "regression"}


class GBT(Estimator):
    family = "gbt"
    PARAMS = PARAMS

    def lightgbm_params(self, seed: int, device: str, n_features: int) -> dict[str, Any]:
        """The parameters handed to ``lgb.train``, by LightGBM's own names."""
        p, n_threads = self.params_, threads()
        # deterministic needs the histogram layout fixed rather than timed at the start;
        # this is the choice LightGBM's timing makes: by column when every thread gets one
        layout = "force_col_wise" if n_features >= n_threads else "force_row_wise"
        params = {
            "objective": OBJECTIVE[self.task],
            "num_leaves": p["num_leaves"],
            "learning_rate": p["learning_rate"],
            "min_data_in_leaf": p["min_child_samples"],
            "feature_fraction": p["feature_fraction"],
            "lambda_l2": p["lambda_l2"],
            "seed": seed,
            "deterministic": True,
            layout: True,
            "num_threads": n_threads,
            "verbose": -1,
        }
        if device == "cuda":
            params["device_type"] = "gpu"  # the OpenCL learner (the wheel has no CUDA one)
        return params

    def _fit(self, X, y, seed, X_valid, y_valid, budget) -> None:
        rounds = max(1, math.ceil(self.params_["n_estimators"] * budget))
        self.device_ = "cpu"
        if wants_gpu():
            try:
                self.booster_ = self._train(X, y, X_valid, y_valid, seed, rounds, "cuda")
                self.device_ = "cuda"
            except lgb.basic.LightGBMError as exc:
                log.info("gbt: LightGBM cannot train on the GPU (%s); training on the CPU", exc)
        if self.device_ == "cpu":
            self.booster_ = self._train(X, y, X_valid, y_valid, seed, rounds, "cpu")
        self.rounds_ = rounds
        # without keep_training_booster, lgb.train keeps only the best round's trees
        self.best_iteration_ = int(self.booster_.current_iteration())

    def _train(self, X, y, X_valid, y_valid, seed, rounds, device) -> lgb.Booster:
        params = self.lightgbm_params(seed, device, X.shape[1])
        train = lgb.Dataset(X, y, params=params)
        valid, callbacks = [], []
        if X_valid is not None:
            valid = [lgb.Dataset(X_valid, y_valid, reference=train, params=params)]
            stop = self.params_["early_stopping_rounds"]
            callbacks = [lgb.early_stopping(stop, first_metric_only=True, verbose=False)]
        return lgb.train(params, train, rounds, valid_sets=valid, callbacks=callbacks)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        p = self.booster_.predict(X, num_iteration=self.best_iteration_)
        return np.asarray(p, dtype=np.float64)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        doc = {"best_iteration": self.best_iteration_, "rounds": getattr(self, "rounds_", None)}
        text = self.booster_.model_to_string(num_iteration=self.best_iteration_)
        return doc, {"model.txt": text}

    def _restore(self, doc: dict[str, Any], files: dict[str, Any]) -> None:
        self.booster_ = lgb.Booster(model_str=bundle_text(files, "model.txt"))
        self.best_iteration_ = int(doc["best_iteration"])
        self.rounds_ = doc.get("rounds")


FAMILY = GBT
