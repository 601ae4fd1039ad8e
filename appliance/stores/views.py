"""control.db: feature views and their versions, and the entities they key on.

A mixin pair: ``ViewTx`` methods join ``ControlTx`` (they run inside its transaction,
through ``self.conn``); ``ViewReads`` methods join ``ControlStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.
"""

from __future__ import annotations

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = []


class ViewTx:
    conn: object


class ViewReads:
    pass
