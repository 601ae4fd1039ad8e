"""The training reference a model's bundle carries as ``reference.json``: what drift
monitoring compares live traffic with.

Two ``kernels.stats.drift.ReferenceSummary`` objects: one over the training rows' monitor
vectors (one column per model input, named as the inputs; see
``Pipeline.monitor_vector``) and one over the model's predictions on the hold-out (for
prediction drift), plus the hold-out metrics live metrics are compared with. Bundles
trained before monitoring have none; monitoring then says why it cannot compute drift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.stats import ReferenceSummary

FORMAT = 1
FILENAME = "reference.json"
MAX_ROWS = 200_000  # training rows summarised at most (a seeded sample beyond)
# distribution points kept per input: KS exact to 1/MAX_POINTS beyond that many distinct
# values; keeps reference.json near 1 MB at 20 continuous inputs
MAX_POINTS = 2_000


def build(model: Any, columns: dict[str, np.ndarray], predictions: np.ndarray,
          holdout: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The ``reference.json`` document of a freshly trained model: ``{"format",
    "features", "prediction", "rows", "holdout"}``; ``"error"`` instead of a summary
    when the data cannot be summarised (a column with no finite value)."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n > MAX_ROWS:
        idx = np.sort(np.random.default_rng(seed).choice(n, MAX_ROWS, replace=False))
        columns = {k: v[idx] for k, v in columns.items()}
    doc: dict[str, Any] = {"format": FORMAT, "rows": int(min(n, MAX_ROWS))}
    doc["holdout"] = {
        k: v for k, v in (holdout or {}).items() if isinstance(v, int | float) and v == v
    }
    try:
        vectors = model.monitor_vector(columns)
        doc["features"] = ReferenceSummary.fit(vectors, model.features, MAX_POINTS).to_dict()
    except ValueError as exc:
        doc["error"] = f"training inputs: {exc}"
    try:
        doc["prediction"] = ReferenceSummary.fit(
            np.asarray(predictions, dtype=np.float64), [model.output_name], MAX_POINTS
        ).to_dict()
    except ValueError as exc:
        doc.setdefault("error", f"hold-out predictions: {exc}")
    return doc


class Reference:
    """A bundle's ``reference.json``, read."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.error: str | None = doc.get("error")
        self.features = ReferenceSummary.from_dict(doc["features"]) if "features" in doc else None
        self.prediction = (
            ReferenceSummary.from_dict(doc["prediction"]) if "prediction" in doc else None
        )
        self.holdout: dict[str, float] = dict(doc.get("holdout") or {})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.features.columns] if self.features else []
