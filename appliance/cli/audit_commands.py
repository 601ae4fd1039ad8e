"""`falaj audit checkpoint | prove | export`: signed checkpoints and proofs over the audit log."""

from __future__ import annotations
