"""Training-set and online-store commands: features training-set, features online,
materialize."""

from __future__ import annotations

from appliance.cli import cli  # noqa: F401
