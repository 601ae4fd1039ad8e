"""The audit view: the chain, its signed checkpoints, receipts and their proofs."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("audit", __name__)
