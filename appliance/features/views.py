"""Declared feature views: register them (``apply``, ``define``), resolve ``VIEW`` or
``VIEW@2``, and read a view's feature rows for training sets and the online store."""

from __future__ import annotations

from appliance.stores import ControlStore, FeatureStore


class FeatureViews:
    def __init__(self, control: ControlStore, features: FeatureStore) -> None:
        self.control = control
        self.features = features
