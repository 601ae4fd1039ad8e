"""Named crash points, for the crash-consistency tests.

``FALAJ_FAULT=NAME`` makes the process kill itself with SIGKILL the first time it
reaches ``point(NAME)``; ``NAME:N`` the Nth time. Each point sits between two commits
of a change that spans the stores, so the tests can stop the real process exactly
there and check that reopening reconciles it. Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter[str] = Counter()

POINTS = (
    "ingest.data_committed",  # rows in features.duckdb, no audit event yet
    "register.bundle_written",  # bundle published, version not committed
    "deploy.loaded",  # new version verified and warmed, nothing committed
    "deploy.committed",  # deployment row and event committed, slots not switched
    "rollback.committed",
    "decisions.data_committed",  # decision records committed, their event not yet
    "decisions.committed",  # records and event committed, answer not yet sent
    "migrate.applied",  # a migration committed, its audit event not yet
    "quarantine.data_committed",  # rows released or dropped, their audit event not yet
    "search.trial_recorded",  # a search trial's run committed, the search still going
)

# `falaj rekey`'s points, exercised by tests/test_rekey.py (kept apart from the stores'
# points above, which tests/test_crash.py covers)
REKEY_POINTS = (
    "rekey.staged",  # new stores, bundles and key staged under HOME/.rekey, no journal yet
    "rekey.committed",  # the journal written (the commit point), nothing renamed yet
    "rekey.swapping",  # control.db renamed into place, features.duckdb not yet
    "rekey.swapped",  # stores, bundles and key in place, the checkpoint key not yet rotated
)


def point(name: str) -> None:
    spec = os.environ.get("FALAJ_FAULT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _seen[name] += 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
