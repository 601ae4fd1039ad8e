"""Names a user gives to things the appliance keeps: tables and models."""

from __future__ import annotations

import re

from appliance.errors import BadName

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadName(
            f"{kind} name {name!r} is not valid: use a letter, then letters, digits or '_' (at most 63)"
        )
    return name
