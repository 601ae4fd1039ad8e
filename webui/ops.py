"""Operations pages and API: backups and restores of the home."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ops", __name__)
