"""Model slots: two per deployment (blue and green), one of them live.

A deployment's state is an immutable ``Deployment``; switching traffic replaces the
reference in one assignment, so a request that already took the old one finishes on
it. Deploys made by another process (``falaj deploy`` beside ``falaj run``) are noticed
through SQLite's ``data_version`` and loaded before the next request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.errors import NotDeployed
from appliance.model import Model

if TYPE_CHECKING:
    from appliance.core import Appliance

SLOTS = ("blue", "green")


def other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


@dataclass(frozen=True)
class Deployment:
    name: str
    live_slot: str
    models: dict[str, Model | None]  # slot -> loaded model

    @property
    def live(self) -> Model:
        model = self.models[self.live_slot]
        if model is None:  # cannot happen for a deployment written by deploy()
            raise NotDeployed(f"model {self.name!r} has no version in its live slot")
        return model


class ModelServer:
    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance
        self._lock = threading.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._seen: int | None = None

    def _load(self, row: dict, current: Deployment | None) -> Deployment:
        models: dict[str, Model | None] = {}
        for slot in SLOTS:
            version = row[f"{slot}_version"]
            old = current.models.get(slot) if current else None
            if version is None:
                models[slot] = None
            elif old is not None and old.version == version:
                models[slot] = old  # already loaded and verified
            else:
                models[slot] = self.appliance.load_model(row["name"], version)
        return Deployment(row["name"], row["live_slot"], models)

    def refresh(self, force: bool = False) -> None:
        """Reload deployments if control.db changed since we last looked."""
        seen = self.appliance.control.data_version()
        if not force and seen == self._seen:
            return
        with self._lock:
            rows = self.appliance.control.query("SELECT * FROM deployments")
            current = self._deployments
            self._deployments = {r["name"]: self._load(r, current.get(r["name"])) for r in rows}
            self._seen = seen

    def install(self, deployment: Deployment) -> None:
        """Make a deployment this process just committed live here at once."""
        with self._lock:
            self._deployments = {**self._deployments, deployment.name: deployment}

    def get(self, name: str) -> Deployment:
        self.refresh()
        deployment = self._deployments.get(name)
        if deployment is None:
            raise NotDeployed(
                f"model {name!r} is not deployed; run `falaj deploy {name} --version N`"
            )
        return deployment

    def deployments(self) -> dict[str, Deployment]:
        self.refresh()
        return dict(self._deployments)
