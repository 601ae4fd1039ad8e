"""The prediction log: every prediction and its request's audit event, written in
batches by one background thread.

Committing two encrypted stores per request would make their fsyncs the cost of every
prediction, so requests hand their records to this log and answer at once; a writer
thread commits whatever is pending every ``interval`` seconds, in one DuckDB and one
SQLCipher transaction. The pending buffer is bounded: past ``max_pending`` rows a
request flushes in its own thread (back-pressure, not unbounded memory). ``flush()``
writes everything now; reads of the log and ``close()`` call it, so nothing submitted
is lost on a clean stop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from appliance import audit
from appliance.audit import Actor

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj.prediction_log")


@dataclass(frozen=True)
class Entry:
    rows: pa.Table  # in the _predictions table's schema
    actor: Actor
    subject: str  # "model@version"
    details: dict[str, Any]  # the audit event's details


class PredictionLog:
    def __init__(
        self, appliance: Appliance, interval: float = 0.2, max_pending: int = 50_000
    ) -> None:
        self.appliance = appliance
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[Entry] = []
        self._pending_rows = 0
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one flush at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, entry: Entry) -> None:
        with self._lock:
            self._pending.append(entry)
            self._pending_rows += entry.rows.num_rows
            full = self._pending_rows >= self.max_pending
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="falaj-prediction-log", daemon=True
                )
                self._thread.start()
        if full:
            self.flush()

    def flush(self) -> int:
        """Write every pending entry now; returns the number of predictions written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending, self._pending_rows = self._pending, [], 0
            if not batch:
                return 0
            try:
                self._write(batch)
            except BaseException:
                with self._lock:  # keep them for the next try, in order
                    self._pending[:0] = batch
                    self._pending_rows += sum(e.rows.num_rows for e in batch)
                raise
            return sum(e.rows.num_rows for e in batch)

    def _write(self, batch: list[Entry]) -> None:
        rows = pa.concat_tables([e.rows for e in batch])
        with self.appliance.features.transaction() as con:
            con.register("_log", rows)
            con.execute("INSERT INTO _predictions BY NAME SELECT * FROM _log")
            con.unregister("_log")
            with self.appliance.control.transaction() as conn:
                for e in batch:
                    audit.append(conn, e.actor, "model.predict", e.subject, e.details)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.interval)
            try:
                self.flush()
            except Exception:  # a full disk, say: keep serving, retry next round
                log.exception("writing the prediction log failed; will retry")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
