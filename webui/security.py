"""Security headers on every answer (HSTS, CSP, frame denial, no-sniff) and the self-test page."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("security", __name__)
