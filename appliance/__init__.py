"""Falaj: an on-premises MLOps appliance."""

__version__ = "0.1.0"
