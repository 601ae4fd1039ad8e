"""features.duckdb: ingest quality reports and quarantined rows.

A mixin pair: ``QualityTx`` methods join ``FeaturesTx`` (they run inside its transaction,
through ``self.conn``); ``QualityReads`` methods join ``FeatureStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.
"""

from __future__ import annotations

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = []


class QualityTx:
    conn: object


class QualityReads:
    pass
