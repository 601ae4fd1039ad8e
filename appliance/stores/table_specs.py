"""control.db: declared tables (keys, created-time column) and their data contracts.

A mixin pair: ``TableSpecTx`` methods join ``ControlTx`` (they run inside its transaction,
through ``self.conn``); ``TableSpecReads`` methods join ``ControlStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.
"""

from __future__ import annotations

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = []


class TableSpecTx:
    conn: object


class TableSpecReads:
    pass
