"""The dashboard's monitoring pages and their JSON API (lands with the release and monitoring issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("monitoring", __name__)
