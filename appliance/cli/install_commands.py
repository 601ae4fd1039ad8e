"""`falaj bundle` and `falaj install-service`: the signed offline installer and the systemd service."""

from __future__ import annotations
