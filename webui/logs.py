"""Request logs: one line per request, plain text or JSON (request id, actor, model, latency)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("logs", __name__)
