"""control.db: registered training sets and their fingerprints.

A mixin pair: ``TrainingSetTx`` methods join ``ControlTx`` (they run inside its transaction,
through ``self.conn``); ``TrainingSetReads`` methods join ``ControlStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.
"""

from __future__ import annotations

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = []


class TrainingSetTx:
    conn: object


class TrainingSetReads:
    pass
