"""The linear family: the kernels' L2 logistic regression (binary, parameter ``C``) and
ridge regression (regression, parameter ``alpha``).

X comes scaled from the pipeline, so one penalty suits every column. Newton's method
converges in a handful of passes, so ``budget`` does not cut a fit short (a partly
converged linear model saves little time and ranks trials wrongly), and a validation set
is not needed. The kernels run on the GPU when the device setting asks for it and one
answers; otherwise on the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance.training.families import Estimator, Param, log, wants_gpu
from kernels._backend import gpu_available
from kernels.training import LogisticRegression, Ridge

PARAMS = {
    "binary": {
        "C": Param("float", 1.0, lo=0, lo_open=True, search={"log_uniform": [0.01, 100.0]}),
        "max_iter": Param("int", 100, lo=1, hi=10_000),
    },
    "regression": {
        "alpha": Param("float", 1.0, lo=0, search={"log_uniform": [0.001, 100.0]}),
    },
}


class Linear(Estimator):
    family = "linear"
    PARAMS = PARAMS

    def _fit(self, X, y, seed, X_valid, y_valid, budget) -> None:
        self.device_ = "cpu"
        if wants_gpu():
            if gpu_available():
                self.device_ = "cuda"
            else:
                log.info("linear: no usable CUDA GPU, training on the CPU")
        p = self.params_
        if self.task == "binary":
            model = LogisticRegression(C=p["C"], max_iter=p["max_iter"], backend=self.device_)
        else:
            model = Ridge(alpha=p["alpha"], backend=self.device_)
        self.model_ = model.fit(X, y)

    @property
    def coef_(self) -> np.ndarray:
        return self.model_.coef_

    @property
    def intercept_(self) -> float:
        return self.model_.intercept_

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return np.asarray(self.model_.predict_proba(X), dtype=np.float64)
        return np.asarray(self.model_.predict(X), dtype=np.float64)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"model": self.model_.to_dict()}, {}

    def _restore(self, doc: dict[str, Any], files: dict[str, Any]) -> None:
        kind = LogisticRegression if self.task == "binary" else Ridge
        self.model_ = kind.from_dict(doc["model"])


FAMILY = Linear
