"""Statistics for validation, drift, fairness and evaluation.

Each kernel has a NumPy reference (``reference.py``), a Numba CPU version (``cpu.py``)
and a numba.cuda version (``cuda.py``) with identical signatures; the public functions
below validate input once, then dispatch on where the data lives and the device
(``kernels.set_device``, else FALAJ_DEVICE) through ``kernels._backend.select``.
"""

from kernels.stats.drift import ReferenceSummary, drift, jensenshannon, psi
from kernels.stats.fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    group_counts,
    group_rates,
)
from kernels.stats.histogram import histogram, quantiles
from kernels.stats.kstest import ks_pvalue
from kernels.stats.metrics import accuracy, log_loss, roc_auc

__all__ = [
    "ReferenceSummary",
    "accuracy",
    "demographic_parity_difference",
    "drift",
    "equalized_odds_difference",
    "group_counts",
    "group_rates",
    "histogram",
    "jensenshannon",
    "ks_pvalue",
    "log_loss",
    "psi",
    "quantiles",
    "roc_auc",
]
