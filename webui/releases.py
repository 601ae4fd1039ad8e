"""The dashboard's releases pages and their JSON API (lands with the release and monitoring issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("releases", __name__)
