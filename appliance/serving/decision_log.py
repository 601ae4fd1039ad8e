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

A request adds its decisions as plain values (``Decisions``); they become one Arrow
table per batch, when the batch is written, not one per request. Batches logged since
``0005_decision_routes`` commit to every column, the route and the monitor vector
(``inputs``) included, and their event says ``"columns": 2``; older events, without it,
commit to the first ten columns and still verify. Since ``records_root`` the event also
commits to the RFC 6962 Merkle root over the batch's records (``record_leaves``): a
decision's receipt (its request id) is provable by itself, the record's inclusion in
that root and the event's in a signed checkpoint (``falaj audit prove``).

Retention (``decision_retention_days``; 0 keeps everything): ``prune`` deletes whole
batches committed before the cutoff. Its commit point is the ``decisions.pruned`` event
naming them (their ``decisions.logged`` events, hashes included, stay in the chain);
the records go after it, and a prune cut short by a crash is finished on open.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance import faults
from appliance.audit import merkle
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import FalajError, Unavailable
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.features import DECISION_COLUMNS, DECISION_COLUMNS_1

log = logging.getLogger("falaj.decision_log")

MODES = ("durable", "async")


COLUMNS = 2  # the "columns" of new batches' events: every column in DECISION_COLUMNS
_COLUMNS = {1: DECISION_COLUMNS_1, 2: DECISION_COLUMNS}
PRUNED_IDS_MAX = 1000  # a decisions.pruned event lists the batch ids up to this many


def records_sha256(rows: pa.Table, columns: int | None = None) -> str:
    """SHA-256 over a batch's records, ordered by request id and row: what its audit
    event commits to, recomputable from the store at any time.

    Each record is its columns as text joined by U+001F, records joined by U+001E;
    floats as the decimal of their IEEE-754 bits, times as microseconds since the epoch,
    so the text is exact and built in Arrow, not Python. ``columns`` 1: the first ten
    (``DECISION_COLUMNS_1``, batches from before the routes). 2: all of them, a null as
    U+0000, and ``inputs`` (lists of floats, the bulk of a record) not as text: after the
    text, U+001D, each record's list length as a little-endian int64 (-1: null), then
    every value's little-endian IEEE-754 bytes, NaN as the one canonical NaN. Default: 2
    when ``rows`` has ``inputs``.
    """
    if columns is None:
        columns = 2 if "inputs" in rows.column_names else 1
    return _records_sha256(*_record_lines(rows, columns), columns)


def batch_hashes(rows: pa.Table) -> tuple[str, str]:
    """A new batch's ``records_sha256`` and ``records_root`` (hex), the records sorted
    and their text built once for both."""
    rows, lines = _record_lines(rows, COLUMNS)
    leaves = _leaves(rows, lines)
    return _records_sha256(rows, lines, COLUMNS), merkle.root_of(leaves).hex()


def _records_sha256(rows: pa.Table, lines: pa.Array, columns: int) -> str:
    digest = hashlib.sha256()
    if len(lines):
        if lines.null_count:  # as "\x1e".join() would have it: a null record cannot be hashed
            raise TypeError("records_sha256: a record is null")
        whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()),
                                                        lines), "\x1e")  # fmt: skip
        digest.update(whole[0].as_buffer())
    if columns > 1:
        digest.update(b"\x1d")
        _inputs_bytes(rows.column("inputs"), digest)
    return digest.hexdigest()


def _record_lines(rows: pa.Table, columns: int) -> tuple[pa.Table, pa.Array]:
    """The records in hashing order, and each one's text (``records_sha256``)."""
    order = pc.sort_indices(rows, [("request_id", "ascending"), ("row_in_request", "ascending")])
    rows = rows.take(order)
    texts = []
    for name in _COLUMNS[columns]:
        if name == "inputs":
            continue
        col = rows.column(name).combine_chunks() if rows.num_rows else rows.column(name)
        if pa.types.is_floating(col.type):
            col = _float_bits(col, canonical=columns > 1)
        elif pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us")).cast(pa.int64())
        texts.append(col.cast(pa.string()))
    if columns == 1:
        lines = pc.binary_join_element_wise(*texts, "\x1f")
    else:
        lines = pc.binary_join_element_wise(
            *texts, "\x1f", null_handling="replace", null_replacement="\x00"
        )
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    return rows, lines


def record_leaves(rows: pa.Table) -> list[bytes]:
    """Each record's RFC 6962 leaf hash, in ``records_sha256``'s order: SHA-256 of 0x00,
    the record's text (as ``records_sha256`` has it, all columns), U+001D, its
    ``inputs`` length as a little-endian int64 (-1: null) and its values' little-endian
    IEEE-754 bytes. A batch's event commits to the Merkle root over these
    (``records_root``), so one decision is provable without the others."""
    return _leaves(*_record_lines(rows, COLUMNS))


def _leaves(rows: pa.Table, lines: pa.Array) -> list[bytes]:
    if lines.null_count:
        raise TypeError("record_leaves: a record is null")
    col = rows.column("inputs")
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
    values = col.flatten().to_numpy(zero_copy_only=False).astype("<f8", copy=False)
    # each record's tail, built in NumPy: its length (int64) then its values, 8 bytes each
    n, counts = len(lengths), np.maximum(lengths, 0)
    starts = np.arange(n) + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    words = np.empty(n + int(counts.sum()), "<i8")
    is_value = np.ones(len(words), bool)
    is_value[starts] = False
    words[starts] = lengths
    words.view("<f8")[is_value] = np.where(np.isnan(values), np.nan, values)
    offsets = (np.append(starts, len(words)) * 8).astype(np.int64)
    tails = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                                   pa.py_buffer(words)])  # fmt: skip
    data = pc.binary_join_element_wise(lines.cast(pa.large_binary()), tails,
                                       pa.scalar(b"\x1d", pa.large_binary()))  # fmt: skip
    sha = hashlib.sha256
    return [sha(b"\x00" + d).digest() for d in data.to_pylist()]


def _float_bits(col: pa.Array, canonical: bool) -> pa.Array:
    values = np.ascontiguousarray(col.to_numpy(zero_copy_only=False), dtype="<f8")
    if canonical:
        values = np.where(np.isnan(values), np.nan, values)
    bits = pa.array(values.view("<i8"))
    return bits if not col.null_count else pc.if_else(col.is_null(), None, bits)


def _inputs_bytes(col: pa.ChunkedArray, digest: Any) -> None:
    """Feed the lists' lengths (-1: null), then their values, as little-endian bytes."""
    col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
    digest.update(np.ascontiguousarray(lengths, dtype="<i8").tobytes())
    values = col.flatten().to_numpy(zero_copy_only=False).astype("<f8", copy=False)
    digest.update(np.where(np.isnan(values), np.nan, values).astype("<f8").tobytes())


@dataclass(slots=True)
class Decisions:
    """One request's decisions as the serving path has them: plain values, turned into
    Arrow once per batch (``decisions_table``), not once per request."""

    ts_us: int  # epoch microseconds
    request_id: str
    actor: str
    model: str
    version: int
    slot: str
    fingerprints: list[str]  # one per record
    outputs: np.ndarray  # (n,) float64
    latency_ms: float
    variant: str = "live"
    release_id: int | None = None
    served: bool = True
    request_key: str | None = None
    inputs: np.ndarray | None = None  # (n, d) float64: the monitor vector


_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us")),
        ("request_id", pa.string()),
        ("row_in_request", pa.int32()),
        ("actor", pa.string()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("slot", pa.string()),
        ("input_fingerprint", pa.string()),
        ("output", pa.float64()),
        ("latency_ms", pa.float64()),
        ("variant", pa.string()),
        ("release_id", pa.int64()),
        ("served", pa.bool_()),
        ("request_key", pa.string()),
        ("inputs", pa.list_(pa.float64())),
    ]
)


def decisions_table(parts: list[Decisions]) -> pa.Table:
    """Requests' decisions as one table in DECISION_COLUMNS' order and types."""
    counts = np.fromiter((len(p.fingerprints) for p in parts), np.int64, len(parts))
    total = int(counts.sum())
    each = total == len(parts)  # one record per request: nothing to repeat
    take = None if each else pa.array(np.repeat(np.arange(len(parts)), counts))

    def per_request(values: list, type_: pa.DataType) -> pa.Array:
        arr = pa.array(values, type_)
        return arr if take is None else arr.take(take)

    if each:
        row_in_request = np.zeros(total, np.int32)
    else:
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        row_in_request = (np.arange(total) - starts).astype(np.int32)
    widths = np.fromiter((0 if p.inputs is None else p.inputs.shape[1] for p in parts),
                         np.int64, len(parts))  # fmt: skip
    offsets = np.zeros(total + 1, np.int32)
    np.cumsum(np.repeat(widths, counts), out=offsets[1:])
    present = [p.inputs.ravel() for p in parts if p.inputs is not None]
    flat = np.concatenate(present) if present else np.empty(0)
    missing = np.repeat(np.fromiter((p.inputs is None for p in parts), bool, len(parts)), counts)
    inputs = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(np.where(np.isnan(flat), np.nan, flat), pa.float64()),
        mask=pa.array(missing) if missing.any() else None,
    )  # fmt: skip
    columns = [
        per_request([p.ts_us for p in parts], pa.int64()).cast(pa.timestamp("us")),
        per_request([p.request_id for p in parts], pa.string()),
        pa.array(row_in_request),
        per_request([p.actor for p in parts], pa.string()),
        per_request([p.model for p in parts], pa.string()),
        per_request([p.version for p in parts], pa.int32()),
        per_request([p.slot for p in parts], pa.string()),
        pa.array([f for p in parts for f in p.fingerprints], pa.string()),
        pa.array(
            np.concatenate([p.outputs for p in parts]) if parts else np.empty(0), pa.float64()
        ),  # fmt: skip
        per_request([p.latency_ms for p in parts], pa.float64()),
        per_request([p.variant for p in parts], pa.string()),
        per_request([p.release_id for p in parts], pa.int64()),
        per_request([p.served for p in parts], pa.bool_()),
        per_request([p.request_key for p in parts], pa.string()),
        inputs,
    ]
    return pa.Table.from_arrays(columns, schema=_SCHEMA)


@dataclass
class Ticket:
    """A durable request waiting for its batch's commit."""

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
        retention_days: float = 0,
        metrics: Any = None,  # appliance.monitoring.metrics.Metrics: batch commits
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"decision_log: {mode!r} is not one of {', '.join(MODES)}")
        self.features = features
        self.control = control
        self.durable = mode == "durable"
        self.interval = interval
        self.max_pending = max_pending
        self.retention_days = retention_days
        self.metrics = metrics
        self._pending: list[Decisions] = []
        self._tickets: list[Ticket] = []  # durable mode: who waits for the next batch
        self._pending_rows = 0
        self._lock = threading.Lock()  # guards _pending, _tickets
        self._write_lock = threading.Lock()  # one batch at a time, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, decisions: Decisions) -> None:
        """Log one request's decisions; in durable mode, return once they are committed
        (``Unavailable`` if they cannot be)."""
        if not self.durable:
            with self._lock:
                self._pending.append(decisions)
                self._pending_rows += len(decisions.fingerprints)
                full = self._pending_rows >= self.max_pending
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="falaj-decision-log", daemon=True
                    )
                    self._thread.start()
            if full:
                with self._write_lock:
                    self._write_pending()
            return
        ticket = Ticket()
        with self._lock:
            self._pending.append(decisions)
            self._tickets.append(ticket)
            self._pending_rows += len(decisions.fingerprints)
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
            tickets, self._tickets = self._tickets, []
        if not batch:
            return 0
        try:
            self._write(batch, answered=not self.durable)
        except Exception as exc:
            log.error("writing %d decisions failed: %s", len(batch), _reason(exc))
            if self.durable:
                for t in tickets:
                    t.error = exc
            else:  # keep them for the next try, in order
                with self._lock:
                    self._pending[:0] = batch
                    self._pending_rows += sum(len(p.fingerprints) for p in batch)
                raise
        finally:
            for t in tickets:
                t.done.set()
        return sum(len(p.fingerprints) for p in batch)

    def _write(self, parts: list[Decisions], answered: bool) -> None:
        t0 = time.perf_counter()
        rows = decisions_table(parts)
        batch_id = uuid.uuid4().hex
        digest, root = batch_hashes(rows)
        at = datetime.now(UTC).replace(tzinfo=None)
        with self.features.transaction() as tx:
            tx.append_decisions(rows, batch_id, len(parts), digest, at, answered)
        faults.point("decisions.data_committed")
        try:
            self._audit(batch_id, rows.num_rows, len(parts), digest, columns=COLUMNS,
                        records_root=root)  # fmt: skip
        except Exception:
            if not answered:  # these will be refused: take their records back
                with contextlib.suppress(Exception), self.features.transaction() as tx:
                    tx.undo_decisions(batch_id)
            raise
        faults.point("decisions.committed")
        if self.metrics is not None:
            self.metrics.batch(rows.num_rows, time.perf_counter() - t0)

    def _audit(self, batch_id: str, n_rows: int, requests: int, digest: str, **extra: Any) -> None:
        with self.control.transaction() as tx:
            tx.append_audit(SYSTEM, "decisions.logged", batch_id,
                            {"rows": n_rows, "requests": requests, "records_sha256": digest}
                            | extra)  # fmt: skip

    def pending(self, request_id: str) -> bool:
        """Whether a request's decisions wait for their batch (its receipt: not provable yet)."""
        with self._lock:
            return any(p.request_id == request_id for p in self._pending)

    def flush(self) -> int:
        """Commit everything pending now; the number of decisions written."""
        with self._write_lock:
            return self._write_pending()

    # -- retention -------------------------------------------------------------------

    def prune(self, actor: Actor, now: datetime | None = None) -> dict[str, Any]:
        """Delete the batches committed more than ``retention_days`` before ``now``
        (default: the present), whole; their ``decisions.logged`` events stay. Audited
        as ``decisions.pruned``, the commit point, naming the batches (their ids up to
        ``PRUNED_IDS_MAX``, always a hash over the sorted ids). 0 days: nothing goes."""
        require(actor, "decision.prune")
        days = self.retention_days
        if not days or days <= 0:
            return {"retention_days": days, "batches": 0, "rows": 0}
        now = now or datetime.now(UTC).replace(tzinfo=None)
        before = now - timedelta(days=days)
        with self._write_lock:  # no batch commits meanwhile
            old = self.features.decision_batches_before(before)
            if not old:
                return {"retention_days": days, "before": _iso(before), "batches": 0, "rows": 0}
            ids = sorted(b["batch_id"] for b in old)
            details: dict[str, Any] = {
                "before": _iso(before),
                "retention_days": days,
                "batches": len(ids),
                "rows": sum(b["rows"] for b in old),
                "batch_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            }
            if len(ids) <= PRUNED_IDS_MAX:
                details["batch_ids"] = ids
            with self.control.transaction() as tx:
                tx.append_audit(actor, "decisions.pruned", _iso(before), details)
            faults.point("decisions.prune_committed")
            with self.features.transaction() as tx:
                tx.prune_decisions(before)
        return {"retention_days": days} | details

    def _pruned(self) -> list[dict[str, Any]]:
        return self.control.audit_details("decisions.pruned")

    # -- reconciliation ----------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Settle batches whose records committed but whose audit event did not: those
        answered before the commit (async mode) are completed, since their decisions
        were given; the others were never answered, and are removed. Finish a prune
        whose event committed but whose deletion did not."""
        pruned = self._pruned()
        # Events commit only after their batch, so equal counts mean nothing to settle.
        if self.features.change_counts()["decisions"] + sum(
            p["batches"] for p in pruned
        ) == self.control.audit_action_count("decisions.logged"):
            return []
        settled = []
        for p in pruned:
            before = datetime.fromisoformat(p["before"].removesuffix("Z"))
            with self.features.transaction() as tx:
                if tx.prune_decisions(before):
                    settled.append(f"pruned before {p['before']}")
        audited = self._audited()
        for batch in self.features.decision_batches():
            batch_id = batch["batch_id"]
            if batch_id in audited:
                continue
            if batch["answered"]:  # the event it would have had, from its stored hash
                columns = self._columns_of(batch)
                extra = {"records_root": merkle.root_of(record_leaves(
                    self.features.decision_batch_rows(batch_id))).hex()} if columns == COLUMNS else {}  # fmt: skip
                self._audit(batch_id, batch["rows"], batch["requests"], batch["records_sha256"],
                            recovered=True, columns=columns, **extra)  # fmt: skip
            else:
                with self.features.transaction() as tx:
                    tx.undo_decisions(batch_id)
                with self.control.transaction() as tx:
                    tx.append_audit(SYSTEM, "reconcile.rollback", batch_id,
                                    {"change": "decisions.logged", "rows": batch["rows"],
                                     "answered": False})  # fmt: skip
            settled.append(batch_id)
        return settled

    def _columns_of(self, batch: dict[str, Any]) -> int:
        """Which columns a stored batch's hash covers: all, unless only the first ten
        give it (a batch written before the routes)."""
        rows = self.features.decision_batch_rows(batch["batch_id"])
        with contextlib.suppress(TypeError):  # a null in the first ten: not an old batch
            if records_sha256(rows, 1) == batch["records_sha256"]:
                return 1
        return COLUMNS

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


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds") + "Z"


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, FalajError) else type(exc).__name__
