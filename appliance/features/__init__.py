"""Features: the catalog of feature tables (and, with the feature-store issue, declared
views, point-in-time training sets and the online store)."""

from __future__ import annotations

from typing import Any

from appliance.auth import Actor, require
from appliance.stores import FeatureStore


class FeatureCatalog:
    def __init__(self, features: FeatureStore) -> None:
        self.features = features

    def tables(self, actor: Actor) -> list[dict[str, Any]]:
        """Every feature table: rows, columns, keys and its latest ingest (UTC)."""
        require(actor, "data.read")
        return [
            {
                "table": t["table_name"],
                "rows": self.features.row_count(t["table_name"]),
                "columns": self.features.column_types(t["table_name"]),
                "entity": t["entity_col"],
                "timestamp": t["timestamp_col"],
                "last_ingest": t["last"].isoformat(timespec="seconds") + "Z" if t["last"] else None,
                "batches": t["batches"],
            }
            for t in self.features.tables()
        ]
