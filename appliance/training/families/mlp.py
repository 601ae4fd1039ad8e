"""The mlp family: a small multi-layer perceptron trained with PyTorch, served with NumPy.

Hidden layers of ``hidden`` units with ReLU (and optional dropout while training), AdamW,
mini-batches shuffled by a seeded ``torch.Generator``; binary cross-entropy on logits for
binary tasks, mean squared error on standardised targets for regression. ``budget``
scales ``epochs``; with a validation set, training stops after ``patience`` epochs
without a better validation loss and keeps the best epoch's weights.

Weights are stored in model.json as base64 little-endian float32. ``predict`` runs the
forward pass in NumPy (float64 from those float32 weights), so serving never imports
torch and a loaded model predicts exactly as the fitted one. Training runs on CUDA when
the device setting allows it (``auto`` or ``cuda``) and ``torch.cuda.is_available()``,
else on the CPU; the random draws are the same, the float arithmetic differs within a
small tolerance.
"""

from __future__ import annotations

import base64
import copy
import math
import os
import time
from typing import Any

import numpy as np

import kernels
from appliance.errors import BadInput
from appliance.training.families import Estimator, Param, log, threads
from kernels.training.reference import sigmoid

_NET = {
    "hidden": Param("layers", [64, 32], search={"choice": ["32", "64,32", "128,64"]}),
    "dropout": Param("float", 0.0, lo=0.0, hi=0.9),
    "lr": Param("float", 1e-3, lo=0, lo_open=True, hi=1.0, search={"log_uniform": [1e-4, 1e-2]}),
    "weight_decay": Param("float", 1e-4, lo=0, search={"log_uniform": [1e-6, 1e-2]}),
    "epochs": Param("int", 30, lo=1, hi=10_000),
    "batch_size": Param("int", 256, lo=1, hi=1 << 20, search={"choice": [128, 256, 512]}),
    "patience": Param("int", 5, lo=1),
}
PARAMS = {"binary": _NET, "regression": _NET}


class MLP(Estimator):
    family = "mlp"
    PARAMS = PARAMS

    def _fit(self, X, y, seed, X_valid, y_valid, budget) -> None:
        import torch

        self.device_ = self._device(torch)
        if self.task == "regression":  # standardised targets: one learning rate fits all
            self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        else:
            self.y_mean_, self.y_std_ = 0.0, 1.0
        epochs = max(1, math.ceil(self.params_["epochs"] * budget))
        if self.device_ == "cuda":  # cuBLAS needs this for deterministic kernels
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        previous = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        devices = [torch.cuda.current_device()] if self.device_ == "cuda" else []
        torch.set_num_threads(threads())
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            with torch.random.fork_rng(devices=devices):  # the caller's RNG state is kept
                torch.manual_seed(seed)
                self.layers_ = self._train(torch, X, y, X_valid, y_valid, seed, epochs)
        finally:
            torch.set_num_threads(previous[0])
            torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])

    def _device(self, torch) -> str:
        """cuda unless the device setting says cpu or torch sees no CUDA GPU (torch's own
        check: the GPU extra's CuPy is not needed for the MLP)."""
        device = kernels.get_device()
        if device == "cpu":
            return "cpu"
        if torch.cuda.is_available():
            return "cuda"
        if device == "cuda":
            log.info("mlp: torch sees no CUDA GPU, training on the CPU")
        return "cpu"

    def network(self, torch):
        """The torch module this model's layers make (weights initialised by torch's RNG)."""
        sizes = [self.n_features_, *self.params_["hidden"]]
        layers: list = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
            if self.params_["dropout"] > 0:
                layers.append(torch.nn.Dropout(self.params_["dropout"]))
        layers.append(torch.nn.Linear(sizes[-1], 1))
        return torch.nn.Sequential(*layers)

    def _train(self, torch, X, y, X_valid, y_valid, seed, epochs) -> list:
        p, device = self.params_, self.device_
        net = self.network(torch).to(device)
        # fused: one kernel per step for all parameters (~1.4x the rows/s of a small net)
        opt = torch.optim.AdamW(
            net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"], fused=True
        )
        loss_fn = torch.nn.BCEWithLogitsLoss() if self.task == "binary" else torch.nn.MSELoss()

        def tensors(X, y):
            t = (y - self.y_mean_) / self.y_std_
            return (torch.as_tensor(X, dtype=torch.float32, device=device),
                    torch.as_tensor(t, dtype=torch.float32, device=device).unsqueeze(1))  # fmt: skip

        Xt, yt = tensors(X, y)
        valid = tensors(X_valid, y_valid) if X_valid is not None else None
        shuffle = torch.Generator().manual_seed(seed)  # on the CPU: the same order anywhere
        n, bs = Xt.shape[0], p["batch_size"]
        best, best_loss, since, seconds, done = None, math.inf, 0, 0.0, 0
        for epoch in range(epochs):
            net.train()
            start = time.perf_counter()
            order = torch.randperm(n, generator=shuffle).to(device)
            Xe, ye = Xt[order], yt[order]  # one gather per epoch; batches are then views
            for i in range(0, n, bs):
                opt.zero_grad(set_to_none=True)
                loss_fn(net(Xe[i : i + bs]), ye[i : i + bs]).backward()
                opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            done = epoch + 1
            if valid is None:
                continue
            net.eval()
            with torch.no_grad():
                loss = float(loss_fn(net(valid[0]), valid[1]))
            if loss < best_loss - 1e-12:
                best, best_loss, since = copy.deepcopy(net.state_dict()), loss, 0
                self.best_epoch_ = done
            else:
                since += 1
                if since >= p["patience"]:
                    break
        if best is not None:
            net.load_state_dict(best)
        else:
            self.best_epoch_ = done
        self.stats_ = {
            "rows": n,
            "epochs": done,
            "seconds": seconds,
            "rows_per_s": n * done / seconds if seconds > 0 else math.inf,
            "device": device,
        }
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        return [
            (m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy())
            for m in linears
        ]

    def _predict(self, X: np.ndarray) -> np.ndarray:
        weights = self._float64()
        h = X
        for i, (wt, b) in enumerate(weights):
            h = h @ wt + b
            if i < len(weights) - 1:
                h = np.maximum(h, 0.0)
        z = h[:, 0]
        if self.task == "binary":
            return sigmoid(z)
        return z * self.y_std_ + self.y_mean_

    def _float64(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The layers as float64 (weight transposed, bias), made once per set of weights."""
        cached = getattr(self, "_weights64", None)
        if cached is None or cached[0] is not self.layers_:
            w64 = [(w.T.astype(np.float64), b.astype(np.float64)) for w, b in self.layers_]
            cached = self._weights64 = (self.layers_, w64)
        return cached[1]

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        layers = [{"weight": _encode(w), "bias": _encode(b), "shape": list(w.shape)}
                  for w, b in self.layers_]  # fmt: skip
        doc = {
            "layers": layers,
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "best_epoch": self.best_epoch_,
            "weights": "base64 little-endian float32, weight (out, in) row-major",
        }
        return doc, {}

    def _restore(self, doc: dict[str, Any], files: dict[str, Any]) -> None:
        self.layers_ = []
        d = self.n_features_
        for i, layer in enumerate(doc["layers"]):
            out, inp = layer["shape"]
            if inp != d:
                raise BadInput(f"mlp model.json: layer {i} takes {inp} inputs, expected {d}")
            w = _decode(layer["weight"], (out, inp), f"layer {i} weight")
            b = _decode(layer["bias"], (out,), f"layer {i} bias")
            self.layers_.append((w, b))
            d = out
        self.y_mean_, self.y_std_ = float(doc["y_mean"]), float(doc["y_std"])
        self.best_epoch_ = doc.get("best_epoch")


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    raw = base64.b64decode(text)
    if len(raw) != 4 * math.prod(shape):
        raise BadInput(f"mlp model.json: {what} holds {len(raw) // 4} floats, expected {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).copy()


FAMILY = MLP
