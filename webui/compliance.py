"""Compliance pages: the consent registry, data-subject requests, the review queue and the record of processing activities."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("compliance", __name__)
