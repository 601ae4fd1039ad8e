"""Training steps: L2-regularised linear and logistic regression."""

from kernels.training.logistic import LogisticRegression

__all__ = ["LogisticRegression"]
