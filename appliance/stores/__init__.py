"""The store layer: the only place with SQL.

``control.db`` (SQLCipher: audit chain, registry, deployments) and ``features.duckdb``
(encrypted DuckDB: tables, ingest history, decision log), each with one writer and
registered migrations.
"""

from appliance.stores.control import ControlStore, ControlTx
from appliance.stores.features import FeatureStore, FeaturesTx, ident

__all__ = ["ControlStore", "ControlTx", "FeatureStore", "FeaturesTx", "ident"]
