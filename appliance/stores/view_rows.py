"""features.duckdb: reading a feature view's rows (columns of a table, an SQL query)
for training sets and the online store.

A mixin: ``ViewRowReads`` methods join ``FeatureStore`` (through ``self.query`` and
``self._reading``).
"""

from __future__ import annotations


class ViewRowReads:
    pass
