"""features.duckdb: the online store, each entity's latest feature values per view.

A mixin pair: ``OnlineTx`` methods join ``FeaturesTx`` (they run inside its transaction,
through ``self.conn``); ``OnlineReads`` methods join ``FeatureStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.
"""

from __future__ import annotations

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = []


class OnlineTx:
    conn: object


class OnlineReads:
    pass
