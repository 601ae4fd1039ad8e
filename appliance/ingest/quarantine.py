"""Quarantined rows: those that broke a contract whose policy is ``quarantine``, kept
with their reasons until released into their table or dropped, each step audited."""

from __future__ import annotations

from appliance.stores import ControlStore, FeatureStore


class Quarantine:
    def __init__(self, features: FeatureStore, control: ControlStore) -> None:
        self.features = features
        self.control = control
