"""Which slot answers a request: the live one, or during a release the candidate for a
share of keys (canary, A/B), or the live one with a copy to the candidate (shadow).

A ``Route`` says how one request was routed; it goes into every decision record
(``variant``, ``release_id``, ``served``, ``request_key``) and into the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

# variant: "live" when no release is active; during one "baseline" or "candidate".
VARIANTS = ("live", "baseline", "candidate")


@dataclass(frozen=True)
class Route:
    slot: str  # the slot whose model answers (or, shadowed, scores the copy)
    variant: str = "live"
    release_id: int | None = None
    served: bool = True  # False: a shadow copy, logged and never returned
    key: str | None = None  # the sticky key: X-Falaj-Key, else the record's entity id
