"""Statistics for validation, drift, fairness and evaluation."""

from kernels.stats.metrics import accuracy, log_loss, roc_auc

__all__ = ["accuracy", "log_loss", "roc_auc"]
