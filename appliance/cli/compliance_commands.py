"""`falaj consent` and `falaj subject`: the consent registry, data-subject requests and the review queue."""

from __future__ import annotations
