"""Feature-store commands: apply, features, materialize."""

from __future__ import annotations

from appliance.cli import cli  # noqa: F401
