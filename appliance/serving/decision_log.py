"""The decision log: every prediction, committed before it is answered.

Durable (the default): a request's records are committed before its answer is sent,
with group commit: whoever takes the write lock writes every record pending at that
moment in one DuckDB and one SQLCipher transaction, so requests arriving together share
one pair of fsyncs. Asynchronous (``decision_log = "async"``): requests answer at once
and a writer thread commits every ``interval`` seconds; a crash loses at most the last
interval's decisions.

Commit point of a batch: the ``decisions.logged`` audit event naming the batch and
committing to its records (``records_sha256``, a hash over them in a fixed order). The
records commit first in features.duckdb, tagged with the batch id; a batch found
without its event when the appliance opens was either answered already (async mode:
its event is written, ``recovered``) or never answered (durable mode: it is removed,
and a ``reconcile.rollback`` event says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance import faults
from appliance.auth import SYSTEM
from appliance.errors import FalajError, Unavailable
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.features import DECISION_COLUMNS

log = logging.getLogger("falaj.decision_log")

MODES = ("durable", "async")


def records_sha256(rows: pa.Table) -> str:
    """SHA-256 over a batch's records, ordered by request id and row: what its audit
    event commits to, recomputable from the store at any time.

    Each record is its columns (DECISION_COLUMNS) as text joined by U+001F, records
    joined by U+001E; floats as the decimal of their IEEE-754 bits, times as
    microseconds since the epoch, so the text is exact and built in Arrow, not Python.
    """
    order = pc.sort_indices(rows, [("request_id", "ascending"), ("row_in_request", "ascending")])
    rows = rows.take(order)
    texts = []
    for name in DECISION_COLUMNS:
        col = rows.column(name).combine_chunks() if rows.num_rows else rows.column(name)
        if pa.types.is_floating(col.type):
            bits = np.ascontiguousarray(col.to_numpy(), dtype="<f8").view("<i8")
            col = pa.array(bits)
        elif pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us")).cast(pa.int64())
        texts.append(col.cast(pa.string()))
    lines = pc.binary_join_element_wise(*texts, "\x1f")
    return hashlib.sha256("\x1e".join(lines.to_pylist()).encode()).hexdigest()


@dataclass
class Ticket:
    rows: pa.Table  # in DECISION_COLUMNS' schema
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class DecisionLog:
    def __init__(
        self,
        features: FeatureStore,
        control: ControlStore,
        mode: str = "durable",
        interval: float = 0.2,
        max_pending: int = 50_000,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"decision_log: {mode!r} is not one of {', '.join(MODES)}")
        self.features = features
        self.control = control
        self.durable = mode == "durable"
        self.interval = interval
        self.max_pending = max_pending
        self._pending: list[Ticket] = []
        self._pending_rows = 0
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch at a time, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, rows: pa.Table) -> None:
        """Log one request's decisions; in durable mode, return once they are committed
        (``Unavailable`` if they cannot be)."""
        ticket = Ticket(rows)
        with self._lock:
            self._pending.append(ticket)
            self._pending_rows += rows.num_rows
            full = self._pending_rows >= self.max_pending
            if not self.durable and self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="falaj-decision-log", daemon=True
                )
                self._thread.start()
        if not (self.durable or full):
            return
        with self._write_lock:
            if not ticket.done.is_set():  # else an earlier writer took it in its batch
                self._write_pending()
        if ticket.error is not None:
            raise Unavailable(
                f"the decision log cannot be written ({_reason(ticket.error)}); "
                "no prediction is given without its record"
            )

    def _write_pending(self) -> int:
        with self._lock:
            batch, self._pending, self._pending_rows = self._pending, [], 0
        if not batch:
            return 0
        try:
            self._write([t.rows for t in batch], answered=not self.durable)
        except Exception as exc:
            log.error("writing %d decisions failed: %s", len(batch), _reason(exc))
            if self.durable:
                for t in batch:
                    t.error = exc
            else:  # keep them for the next try, in order
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_rows += sum(t.rows.num_rows for t in batch)
                raise
        finally:
            for t in batch:
                t.done.set()
        return sum(t.rows.num_rows for t in batch)

    def _write(self, parts: list[pa.Table], answered: bool) -> None:
        rows = pa.concat_tables(parts)
        batch_id = uuid.uuid4().hex
        digest = records_sha256(rows)
        at = datetime.now(UTC).replace(tzinfo=None)
        with self.features.transaction() as tx:
            tx.append_decisions(rows, batch_id, len(parts), digest, at, answered)
        faults.point("decisions.data_committed")
        try:
            self._audit(batch_id, rows.num_rows, len(parts), digest)
        except Exception:
            if not answered:  # these will be refused: take their records back
                with contextlib.suppress(Exception), self.features.transaction() as tx:
                    tx.undo_decisions(batch_id)
            raise
        faults.point("decisions.committed")

    def _audit(self, batch_id: str, n_rows: int, requests: int, digest: str, **extra: Any) -> None:
        with self.control.transaction() as tx:
            tx.append_audit(SYSTEM, "decisions.logged", batch_id,
                            {"rows": n_rows, "requests": requests, "records_sha256": digest}
                            | extra)  # fmt: skip

    def flush(self) -> int:
        """Commit everything pending now; the number of decisions written."""
        with self._write_lock:
            return self._write_pending()

    def reconcile(self) -> list[str]:
        """Settle batches whose records committed but whose audit event did not: those
        answered before the commit (async mode) are completed, since their decisions
        were given; the others were never answered, and are removed."""
        # Events commit only after their batch, so equal counts mean nothing to settle.
        if self.features.change_counts()["decisions"] == self.control.audit_action_count(
            "decisions.logged"
        ):
            return []
        audited = self._audited()
        settled = []
        for batch in self.features.decision_batches():
            batch_id = batch["batch_id"]
            if batch_id in audited:
                continue
            if batch["answered"]:  # the event it would have had, from its stored hash
                self._audit(batch_id, batch["rows"], batch["requests"], batch["records_sha256"],
                            recovered=True)  # fmt: skip
            else:
                with self.features.transaction() as tx:
                    tx.undo_decisions(batch_id)
                with self.control.transaction() as tx:
                    tx.append_audit(SYSTEM, "reconcile.rollback", batch_id,
                                    {"change": "decisions.logged", "rows": batch["rows"],
                                     "answered": False})  # fmt: skip
            settled.append(batch_id)
        return settled

    def _audited(self) -> set[str]:
        return {e["subject"] for e in self.control.audit_subjects("decisions.logged")}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.interval)
            try:
                self.flush()
            except Exception:  # a full disk, say: keep serving, retry next round
                log.exception("writing the decision log failed; will retry")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, FalajError) else type(exc).__name__
