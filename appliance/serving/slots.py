"""Model slots: two per deployment (blue and green), one of them live.

A deployment's state is an immutable ``Deployment``; switching traffic replaces the
reference in one assignment, so a request that already took the old one finishes on
it. Deploys made by another process (``falaj deploy`` beside ``falaj run``) are noticed
through SQLite's ``data_version`` and loaded before the next request. A slot whose
bundle fails verification is kept out of service and reported (degraded), and an
integrity-failure audit event is written once; the other slot keeps serving.

During a release (canary, shadow, A/B) the deployment also carries the active
``Release``: its candidate waits in the idle slot and the router sends it its share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.auth import SYSTEM
from appliance.errors import BundleTampered, FalajError, NotDeployed, Unavailable
from appliance.registry.model import Model
from appliance.stores import ControlStore

log = logging.getLogger("falaj.serving")

SLOTS = ("blue", "green")


def other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


# How often a request looks for a deployment change made by another process (`falaj
# deploy` beside `falaj run`); this process's own changes apply at once (install).
CHECK_EVERY = 0.01


@dataclass(frozen=True)
class Slot:
    version: int | None = None
    model: Model | None = None  # None: empty, not loaded here, or failed verification
    error: str | None = None  # why a slot with a version has no model


@dataclass(frozen=True)
class Release:
    """An active release as routing needs it (a row of the ``releases`` table)."""

    id: int
    strategy: str  # canary | shadow | ab
    percent: float  # the candidate's share of keys (canary, A/B); of copies (shadow)
    baseline_slot: str
    candidate_slot: str
    baseline_version: int
    candidate_version: int
    entity_column: str | None = None  # where a record's sticky key is, if anywhere

    @classmethod
    def from_row(cls, r: dict) -> Release:
        return cls(r["id"], r["strategy"], float(r["percent"]), r["baseline_slot"],
                   r["candidate_slot"], r["baseline_version"], r["candidate_version"],
                   r["entity_column"])  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    name: str
    live_slot: str
    slots: dict[str, Slot] = field(default_factory=dict)
    release: Release | None = None

    @property
    def live(self) -> Model:
        slot = self.slots.get(self.live_slot, Slot())
        if slot.model is None:
            why = slot.error or "its bundle is not loaded"
            raise Unavailable(
                f"model {self.name!r}: the live {self.live_slot} slot is out of service: {why}"
            )
        return slot.model

    def version(self, slot: str) -> int | None:
        return self.slots.get(slot, Slot()).version

    @property
    def degraded(self) -> dict[str, str]:
        return {s: v.error for s, v in self.slots.items() if v.error}


Loader = Callable[[str, int], Model]


class ModelServer:
    def __init__(self, control: ControlStore, load: Loader) -> None:
        self.control = control
        self.load = load
        self._lock = threading.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._seen: int | None = None
        self._checked = 0.0  # time.monotonic() of the hot path's last look at control.db
        self._reported: set[tuple[str, int]] = set()

    def _slot(self, name: str, version: int | None, current: Deployment | None, slot: str) -> Slot:
        if version is None:
            return Slot()
        old = current.slots.get(slot) if current else None
        if old is not None and old.version == version and old.model is not None:
            return old  # already loaded and verified
        try:
            model = self.load(name, version)
        except BundleTampered as exc:
            self.report_integrity_failure(name, version, exc.message)
            return Slot(version, None, exc.message)
        try:
            model.warm_up()  # its first answer is not a request's: a switch costs no spike
        except FalajError as exc:
            return Slot(version, None, f"warm-up failed: {exc.message}")
        return Slot(version, model)

    def report_integrity_failure(self, name: str, version: int, message: str) -> None:
        """Audit a bundle that failed verification, once per process and version."""
        log.error("%s", message)
        if (name, version) in self._reported:
            return
        self._reported.add((name, version))
        with self.control.transaction() as tx:
            tx.append_audit(SYSTEM, "model.integrity_failure", f"{name}@{version}",
                            {"error": message})  # fmt: skip

    def refresh(self, force: bool = False, wait: bool = True) -> None:
        """Reload deployments if control.db changed since we last looked.

        With ``wait=False`` a request that finds another thread loading the change
        (a bundle takes tens of milliseconds) goes on with the state it has, rather
        than queueing behind the load: a switch made elsewhere lands a moment later.
        Such a request looks at control.db at most every ``CHECK_EVERY`` seconds, and
        does not wait while this process writes there (a decision batch's audit event):
        the next request looks again."""
        if not (force or wait):
            now = time.monotonic()
            if now - self._checked < CHECK_EVERY:
                return
            self._checked = now
        seen = self.control.data_version(wait=force or wait)
        if seen is None:  # this process is committing: the next request looks again
            self._checked = 0.0
            return
        if not force and seen == self._seen:
            return
        if not self._lock.acquire(blocking=wait):
            return
        try:
            if not force and seen == self._seen:
                return  # another thread loaded this change while we waited
            rows = self.control.deployments()
            releases = {r["model"]: Release.from_row(r) for r in self.control.active_releases()}
            current = self._deployments
            fresh = {}
            for r in rows:
                cur = current.get(r["name"])
                slots = {s: self._slot(r["name"], r[f"{s}_version"], cur, s) for s in SLOTS}
                fresh[r["name"]] = Deployment(r["name"], r["live_slot"], slots,
                                              releases.get(r["name"]))  # fmt: skip
            self._deployments = fresh
            self._seen = seen
        finally:
            self._lock.release()

    def install(self, deployment: Deployment) -> None:
        """Make a deployment this process just committed live here at once."""
        with self._lock:
            self._deployments = {**self._deployments, deployment.name: deployment}

    def loaded(self, name: str) -> Deployment | None:
        """The deployment as this process holds it, without looking at the store."""
        return self._deployments.get(name)

    def get(self, name: str) -> Deployment:
        self.refresh(wait=False)
        deployment = self._deployments.get(name)
        if deployment is None:  # perhaps being loaded by another thread right now
            self.refresh()
            deployment = self._deployments.get(name)
        if deployment is None:
            raise NotDeployed(
                f"model {name!r} is not deployed; run `falaj deploy {name} --version N`"
            )
        return deployment

    def deployments(self, wait: bool = True) -> dict[str, Deployment]:
        """Every deployment; without ``wait`` as ``get`` sees them (the health check)."""
        self.refresh(wait=wait)
        return dict(self._deployments)
