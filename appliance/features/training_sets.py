"""Point-in-time training sets: a spine joined to feature views, each row seeing only
what was known at its time, written to a file and registered with a fingerprint."""

from __future__ import annotations

from appliance.features.views import FeatureViews
from appliance.stores import ControlStore, FeatureStore


class TrainingSets:
    def __init__(self, views: FeatureViews, features: FeatureStore, control: ControlStore) -> None:
        self.views = views
        self.features = features
        self.control = control
