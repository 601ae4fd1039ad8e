"""The online store: each entity's latest feature row per view, materialized from the
offline tables and read by entity id for serving."""

from __future__ import annotations

from appliance.features.views import FeatureViews
from appliance.stores import ControlStore, FeatureStore


class OnlineStore:
    def __init__(self, views: FeatureViews, features: FeatureStore, control: ControlStore) -> None:
        self.views = views
        self.features = features
        self.control = control
