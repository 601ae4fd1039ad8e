"""Durations written as text: ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (one unit)."""

from __future__ import annotations

import re
from datetime import timedelta

from appliance.errors import BadInput

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str | int | float, where: str) -> timedelta:
    """A positive duration; a bare number is seconds. ``where`` names it in errors."""
    if isinstance(text, bool):
        raise BadInput(f"{where}: {text!r} is not a duration (like 30d, 12h, 90m)")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
        if not m:
            raise BadInput(f"{where}: {text!r} is not a duration (like 30d, 12h, 90m)")
        seconds = timedelta(**{UNITS[m[2] or "s"]: float(m[1])}).total_seconds()
    if not 0 < seconds < 100 * 366 * 86400:
        raise BadInput(f"{where}: {text!r} must be more than zero and under 100 years")
    return timedelta(seconds=seconds)


def format_duration(d: timedelta) -> str:
    """The shortest exact text for ``d`` (``30d``, ``36h``, ``90s``)."""
    seconds = d.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
