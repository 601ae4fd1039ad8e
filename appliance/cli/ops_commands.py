"""`falaj backup` and `falaj restore`."""

from __future__ import annotations
