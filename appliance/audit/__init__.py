"""The audit chain: verifying it, its Merkle tree, signed checkpoints, receipts' proofs
and the export an outside verifier checks.

Events are appended by the store (``ControlTx.append_audit``) in the same transaction
as the change they record. Verification is incremental: the store keeps the last
verified head (seq, hash), so a page load re-hashes only newer events, after checking
that the head itself is still there unchanged. Then the store is held against the
latest signed checkpoint (``checkpoints.py``, a file outside the store): it must still
hold that many events, without a gap, and event ``size`` must be the one signed
(``head``); since every event's hash covers its predecessor's, that one comparison
pins all of them, so the root need not be recomputed (``full=True`` recomputes it, and
every checkpoint's, and re-hashes everything). This catches a tail cut, a page from an
older copy spliced in (events missing before the head: the table's rows are counted
from its own pages, not an index, once per process and then only the new ones), and
the whole file rolled back to an older copy, which carries its older verified head
along.

The Merkle tree (RFC 6962, leaves the events' chain hashes) is kept in memory per
process and extended as events are added: a root, an inclusion or a consistency proof
reads only events newer than the last call.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.audit import checkpoints as cp
from appliance.audit import merkle
from appliance.audit.chain import GENESIS, Verification, canonical_json, event_hash, verify
from appliance.auth import Actor, require
from appliance.errors import BadInput, CheckFailed, FalajError, NotFound
from appliance.files import publish

if TYPE_CHECKING:  # the store imports the chain's hashing: no import cycle at run time
    from appliance.stores import ControlStore, FeatureStore

__all__ = ["AuditService", "ReceiptPending", "Verification", "canonical_json", "event_hash",
           "verify"]  # fmt: skip

PAGE = 50_000  # events read per query while verifying
EXPORT_FORMAT = "falaj-audit-export/1"
RECEIPT = re.compile(r"[0-9a-f]{32}")


class ReceiptPending(FalajError):
    """A receipt whose decisions or proof are not written yet: ask again shortly."""

    status = 409
    exit_code = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _leaf(hash_hex: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(hash_hex))


class AuditService:
    def __init__(
        self,
        control: ControlStore,
        home: Path | None = None,
        master: Callable[[], bytes] | None = None,
        features: Callable[[], FeatureStore] | None = None,
        decision_log: Callable[[], Any] | None = None,
    ) -> None:
        self.control = control
        self.home = Path(home) if home is not None else None
        self._master = master
        self._features = features
        self._decision_log = decision_log
        self._tree = merkle.Tree()
        self._tree_lock = threading.Lock()
        self._key_override: bytes | None = None  # the new master, right after a rotation
        self._counted: tuple[int, int] | None = None  # (event, the table's rows up to it)

    # -- the chain -----------------------------------------------------------------

    def verify(self, actor: Actor, full: bool = False,
               against: Path | None = None) -> Verification:  # fmt: skip
        """The chain (incrementally, or ``full``), then the store against the latest
        signed checkpoint; ``against``: also against a copy of the checkpoint log kept
        off the box (``falaj audit checkpoint --copy-to``)."""
        require(actor, "audit.read")
        result = self._verify_chain(full)
        if not result.ok:
            return result
        result = self._against_checkpoint(result, full)
        if result.ok and against is not None:
            result = self._against_copy(result, Path(against))
        return result

    def _against_copy(self, v: Verification, path: Path) -> Verification:
        """The home's checkpoint log must extend the copy: a home whose store and log
        were both put back to an older copy falls short of it (the home's own log was
        already held against the store)."""
        if path.is_dir():
            path = path / cp.LOG_FILE
        try:
            copy = path.read_bytes().decode("utf-8", errors="replace").split("\n")[:-1]
        except OSError as exc:
            raise BadInput(f"--against {path.name}: cannot read it ({exc.strerror})") from None
        home = cp.CheckpointLog(self.home).lines() if self.home is not None else []
        top = v.head[0] if v.head else 0
        if len(home) < len(copy):
            return dataclasses.replace(v, first_bad=top + 1, reason=(
                f"the copy {path.name} holds {len(copy)} checkpoint lines, this home's log "
                f"only {len(home)}: the home (store and log) was put back to an older copy"))  # fmt: skip
        for i, line in enumerate(copy, 1):
            if home[i - 1] != line:
                return dataclasses.replace(v, first_bad=top + 1, reason=(
                    f"checkpoint line {i} differs from the one in the copy {path.name}: "
                    "the home's checkpoint log was rewritten"))  # fmt: skip
        return v

    def _verify_chain(self, full: bool) -> Verification:
        if full:
            self._counted = None
        start = (0, GENESIS) if full else (self.control.verified_head() or (0, GENESIS))
        if start[0]:
            row = self.control.audit_event(start[0])
            if row is None:
                last = self.control.audit_max_seq()
                return Verification(0, last + 1, f"the chain ends at event {last}, but event "
                                    f"{start[0]} was verified before: events were removed")  # fmt: skip
            if row["hash"] != start[1]:
                return Verification(0, start[0], f"event {start[0]} changed since it was verified")
        result = Verification(start[0], head=start)
        while True:
            rows = self.control.audit_events(after=result.head[0], limit=PAGE)  # type: ignore[index]
            step = verify(rows, after=result.head)  # type: ignore[arg-type]
            result = Verification(step.checked, step.first_bad, step.reason, step.head,
                                  result.hashed + step.hashed)  # fmt: skip
            if not step.ok or len(rows) < PAGE:
                break
        if result.ok:
            top = result.head[0]  # type: ignore[index]
            count = self._rows_upto(top)
            if count != top:  # rows before the verified head are gone: a spliced page
                gap = self.control.audit_first_gap()
                return Verification(0, gap, f"event {gap} is missing ({top - count} events "
                                    f"before event {top} are gone): the file was altered, "
                                    "an older copy of a page put back?", result.head)  # fmt: skip
        if result.ok and result.head and result.head != start:
            with self.control.transaction() as tx:
                tx.set_verified_head(*result.head)
        return result

    def _rows_upto(self, top: int) -> int:
        """The table's rows up to event ``top``: counted from its pages once per process
        (one scan in C), then only those added since, by sequence range."""
        counted = self._counted
        if counted is not None and counted[0] <= top:
            count = counted[1] + self.control.audit_rows_between(counted[0], top)
        else:
            count = self.control.audit_rows()
        if count == top:
            self._counted = (top, count)
        return count

    def _against_checkpoint(self, v: Verification, full: bool) -> Verification:
        if self.home is None:
            return v
        log = cp.CheckpointLog(self.home)
        records = log.records()
        problem = self._log_problem(log, records, full)
        if problem:
            return dataclasses.replace(v, first_bad=v.checked + 1, reason=problem)
        latest = next((r for r in reversed(records) if r.get("kind") == "checkpoint"), None)
        if latest is None:
            return v
        size, top = latest["size"], v.head[0] if v.head else 0
        where = f"checkpoint {latest['size']} (signed {latest['time']})"
        if top < size:
            return dataclasses.replace(v, first_bad=top + 1, reason=(
                f"the store ends at event {top}, but {where} covers {size} events: its tail "
                "was cut, or the file was rolled back to an older copy"))  # fmt: skip
        if size:
            row = self.control.audit_event(size)
            if row is None or row["hash"] != latest["head"]:
                return dataclasses.replace(v, first_bad=size, reason=(
                    f"event {size} is not the one {where} signed: the store was rolled back "
                    "to an older copy or rewritten"))  # fmt: skip
        if full:
            tree = self._synced_tree()
            for r in records:
                if r.get("kind") == "checkpoint" and tree.root(r["size"]).hex() != r["root"]:
                    return dataclasses.replace(v, first_bad=r["size"], reason=(
                        f"the tree of the first {r['size']} events does not have the root "
                        f"checkpoint {r['size']} signed"))  # fmt: skip
        return dataclasses.replace(v, checkpoint=size)

    def _log_problem(self, log: cp.CheckpointLog, records: list[dict], full: bool) -> str:
        """What is wrong with the checkpoint log, or its index in control.db."""
        name = f"{cp.LOG_DIR}/{cp.LOG_FILE}"
        indexed = self.control.checkpoint_count()
        if len(records) < indexed:
            return (f"the checkpoint log {name} has {len(records)} lines, but control.db "
                    f"indexed {indexed}: the log was cut short or replaced")  # fmt: skip
        if indexed:
            wanted = (
                self.control.checkpoint_lines() if full else [self.control.checkpoint_line(indexed)]
            )
            lines = log.lines()
            for r in wanted:
                if lines[r["line_no"] - 1] != r["line"]:
                    return f"the checkpoint log {name}: line {r['line_no']} is not the one indexed"
        if not records:
            return ""
        check = cp.check_lines(records, every=full)
        if not check.ok:
            return f"the checkpoint log {name}: {check.reason}"
        if self._master is not None and check.key != cp.public_bytes(self._key()).hex():
            return (f"the checkpoint log {name} is signed by key {cp.key_id(bytes.fromhex(check.key))}, "
                    "not by this appliance's checkpoint key (and no rotation names it)")  # fmt: skip
        return ""

    def tail(self, n: int, actor: Actor) -> list[dict[str, Any]]:
        require(actor, "audit.read")
        return self.control.audit_tail(n)

    # -- the tree ------------------------------------------------------------------

    def _synced_tree(self) -> merkle.Tree:
        """The Merkle tree over every event in the store, extended by those added since
        the last call (rebuilt if the store no longer holds what it was built from)."""
        with self._tree_lock:
            tree = self._tree
            if tree.size:
                row = self.control.audit_event(tree.size)
                if row is None or _leaf(row["hash"]) != tree.leaf(tree.size - 1):
                    tree = self._tree = merkle.Tree()
            fresh = self.control.audit_hashes(after=tree.size)
            for i, (seq, _) in enumerate(fresh, tree.size + 1):
                if seq != i:
                    raise CheckFailed(f"audit chain: event {i} is missing; `falaj audit verify`")
            tree.extend(_leaf(h) for _, h in fresh)
            return tree

    def root(self, actor: Actor, size: int | None = None) -> dict[str, Any]:
        require(actor, "audit.read")
        tree = self._synced_tree()
        size = tree.size if size is None else size
        self._size_ok(size, tree)
        return {"size": size, "root": tree.root(size).hex()}

    def _size_ok(self, size: int, tree: merkle.Tree) -> None:
        if not 0 <= size <= tree.size:
            raise BadInput(f"tree size {size}: the chain holds {tree.size} events")

    # -- checkpoints ---------------------------------------------------------------

    def _key(self):
        master = self._key_override or self._master()  # type: ignore[misc]
        from appliance import keys

        return cp.private_key(keys.derive(master, cp.KEY_PURPOSE))

    def _log(self) -> cp.CheckpointLog:
        if self.home is None or self._master is None:
            raise CheckFailed("audit checkpoints need the appliance's home and master key")
        return cp.CheckpointLog(self.home)

    def _index_missing(self, log: cp.CheckpointLog) -> None:
        """Index lines a crash left in the log but not in control.db (call locked)."""
        indexed = self.control.checkpoint_count()
        lines = log.lines()
        if len(lines) > indexed:
            with self.control.transaction() as tx:
                for n, line in enumerate(lines[indexed:], indexed + 1):
                    tx.add_checkpoint(n, json.loads(line), line)

    def checkpoint(self, actor: Actor, copy_to: Path | None = None,
                   if_changed: bool = False) -> dict[str, Any]:  # fmt: skip
        """Sign the verified chain's size, root and head, append it to the checkpoint
        log (fsync'd) and index it; ``copy_to``: publish the whole log there too.
        ``if_changed``: none when the latest checkpoint already covers every event."""
        require(actor, "audit.checkpoint")
        log = self._log()
        with log.locked():
            self._index_missing(log)
            v = self._against_checkpoint(self._verify_chain(False), False)
            if not v.ok:
                raise CheckFailed(f"audit chain broken at event {v.first_bad}: {v.reason}; "
                                  "no checkpoint signs it")  # fmt: skip
            size, head = v.head if v.head else (0, GENESIS)
            latest = self.latest_checkpoint()
            if if_changed and latest is not None and latest["size"] == size:
                return latest | {"written": False}
            root = self._synced_tree().root(size)
            record = cp.checkpoint_record(self._key(), size, root, head, _now())
            line = cp.line_of(record)
            n = log.append(line)
            with self.control.transaction() as tx:
                tx.add_checkpoint(n, record, line)
        out = record | {"line_no": n, "written": True}
        if copy_to is not None:
            out["copied_to"] = str(log.copy_to(copy_to))
        return out

    def scheduled_checkpoint(self, actor: Actor) -> dict[str, Any]:
        """The scheduler's job (``audit_checkpoint_every``): a checkpoint unless the
        latest already covers every event."""
        return self.checkpoint(actor, if_changed=True)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The log's last checkpoint line (the file is the truth, not its index)."""
        if self.home is None:
            return None
        records = cp.CheckpointLog(self.home).records()
        for n in range(len(records), 0, -1):
            if records[n - 1].get("kind") == "checkpoint":
                return records[n - 1] | {"line_no": n}
        return None

    def checkpoints(self, actor: Actor, limit: int = 20) -> list[dict[str, Any]]:
        require(actor, "audit.read")
        return self.control.checkpoints(limit)

    def rotate_checkpoint_key(self, old_master: bytes, new_master: bytes,
                              actor: Actor) -> dict[str, Any]:  # fmt: skip
        """After a master-key rotation: a rotation line signed by the old checkpoint key
        and the new one, naming the new, then a checkpoint signed by the new key."""
        require(actor, "keys.rotate")
        from appliance import keys

        old = cp.private_key(keys.derive(old_master, cp.KEY_PURPOSE))
        new = cp.private_key(keys.derive(new_master, cp.KEY_PURPOSE))
        log = self._log()
        with log.locked():
            self._index_missing(log)
            record = cp.rotation_record(old, new, _now())
            line = cp.line_of(record)
            n = log.append(line)
            with self.control.transaction() as tx:
                tx.add_checkpoint(n, record, line)
                tx.append_audit(actor, "audit.key_rotated", cp.LOG_FILE,
                                {"old_key_id": record["key_id"],
                                 "new_key_id": record["new_key_id"], "line": n})  # fmt: skip
        self._key_override = new_master
        return {"rotation": record | {"line_no": n},
                "checkpoint": self.checkpoint(actor if actor.can("audit.checkpoint")
                                              else Actor("system", "falaj"))}  # fmt: skip

    # -- proofs --------------------------------------------------------------------

    def consistency(self, actor: Actor, first: int | None = None,
                    second: int | None = None) -> dict[str, Any]:  # fmt: skip
        """A consistency proof from tree size ``first`` to ``second`` (default: the two
        latest checkpoints, or the latest one and the whole chain)."""
        require(actor, "audit.read")
        tree = self._synced_tree()
        sizes = [c["size"] for c in self.control.checkpoints(2)]
        if second is None:
            second = sizes[0] if sizes and first is None and len(sizes) > 1 else tree.size
        if first is None:
            first = (sizes[1] if len(sizes) > 1 and second == sizes[0] else
                     sizes[0] if sizes else 0)  # fmt: skip
        self._size_ok(second, tree)
        if not 0 <= first <= second:
            raise BadInput(f"consistency: from {first} to {second}: expected 0 <= from <= to")
        proof = tree.consistency(first, second)
        old, new = tree.root(first), tree.root(second)
        return {"from": first, "to": second, "from_root": old.hex(), "to_root": new.hex(),
                "proof": [h.hex() for h in proof],
                "verified": merkle.verify_consistency(first, second, old, new, proof)}  # fmt: skip

    def prove(self, receipt: str, actor: Actor) -> dict[str, Any]:
        """A decision's proof: its records' inclusion in their batch's Merkle root (which
        the batch's audit event commits to) and that event's inclusion in the tree the
        latest signed checkpoint covers. ``ReceiptPending`` while either is not written."""
        require(actor, "audit.read")
        from appliance.audit.verify_export import check_proof
        from appliance.serving.decision_log import record_leaves, records_sha256

        receipt = (receipt or "").strip().lower()
        if not RECEIPT.fullmatch(receipt):
            raise BadInput(f"receipt {receipt[:80]!r}: expected the 32 hex digits a prediction "
                           "answered with (its receipt or request_id)")  # fmt: skip
        if self._features is None:
            raise CheckFailed("proofs need the feature store")
        features = self._features()
        rows = features.decisions(receipt)
        if not rows:
            if self._decision_log is not None and self._decision_log().pending(receipt):
                raise ReceiptPending(f"receipt {receipt}: its decisions are not written yet "
                                     "(the decision log's next batch); ask again in a moment")  # fmt: skip
            raise NotFound(f"no decision with receipt {receipt} (one given a moment ago may "
                           "still wait for its batch: ask again shortly)")  # fmt: skip
        batch_id = rows[0]["batch_id"]
        events = self.control.audit_find("decisions.logged", batch_id)
        if not events:
            raise ReceiptPending(f"receipt {receipt}: the audit event of its batch {batch_id} "
                                 "is not written yet; ask again in a moment")  # fmt: skip
        event = self.control.audit_event(events[0]["seq"])
        details = json.loads(event["details"])
        batch = features.decision_batch_rows(batch_id)
        out: dict[str, Any] = {"receipt": receipt, "model": rows[0]["model"],
                               "version": rows[0]["version"], "batch": batch_id,
                               "batch_rows": batch.num_rows}  # fmt: skip
        if "records_root" in details:
            leaves = record_leaves(batch)
            tree = merkle.Tree(leaves)
            if tree.root().hex() != details["records_root"]:
                raise CheckFailed(f"receipt {receipt}: the records of batch {batch_id} no longer "
                                  f"hash to the root its audit event {event['seq']} committed to")  # fmt: skip
            ids = batch.column("request_id").to_pylist()  # the leaves' order: request, row
            out["kind"] = "merkle"
            out["records_root"] = details["records_root"]
            out["decisions"] = [{"index": i, "leaf": leaves[i].hex(),
                                 "path": [h.hex() for h in tree.inclusion(i)]}
                                for i, r in enumerate(ids) if r == receipt]  # fmt: skip
        else:  # a batch from before records_root: the whole batch against its hash
            if records_sha256(batch, details.get("columns", 1)) != details["records_sha256"]:
                raise CheckFailed(f"receipt {receipt}: the records of batch {batch_id} no longer "
                                  f"hash to what its audit event {event['seq']} committed to")  # fmt: skip
            out["kind"] = "records_sha256"
            out["records_sha256"] = details["records_sha256"]
        latest = self.latest_checkpoint()
        if latest is None or latest["size"] < event["seq"]:
            covered = f"covers {latest['size']} events" if latest else "does not exist yet"
            raise ReceiptPending(f"receipt {receipt}: its batch's audit event {event['seq']} is "
                                 f"not in a signed checkpoint yet (the latest {covered}); the "
                                 "next checkpoint covers it (`falaj audit checkpoint`)")  # fmt: skip
        chain = self._synced_tree()
        out["event"] = {k: event[k] for k in ("seq", "ts", "actor", "action", "subject",
                                                "details", "prev_hash", "hash")}  # fmt: skip
        out["event_path"] = [h.hex() for h in chain.inclusion(event["seq"] - 1, latest["size"])]
        out["checkpoint"] = {k: v for k, v in latest.items()}
        problem = check_proof(out)
        out["verified"] = problem is None
        if problem:
            raise CheckFailed(f"receipt {receipt}: its proof does not verify: {problem}")
        return out

    # -- export --------------------------------------------------------------------

    def export(self, actor: Actor, out: Path) -> dict[str, Any]:
        """Every event and every checkpoint line in one JSON file, for
        ``python -m appliance.audit.verify_export``; written atomically. The export is
        itself an event, and, when ``actor`` may write one, a checkpoint then signs the
        chain up to it, so every exported event is under a signature."""
        require(actor, "audit.export")
        out = Path(out)
        if out.is_dir():
            raise BadInput(f"--out {out.name}: is a folder; name the file to write")
        if not out.parent.is_dir():
            raise BadInput(f"--out {out.name}: its folder does not exist")
        with self.control.transaction() as tx:
            tx.append_audit(actor, "audit.export", out.name, {})
        if actor.can("audit.checkpoint") and self.home is not None and self._master is not None:
            self.checkpoint(actor)
        # the lines first: the events read after them hold every event they sign
        lines = cp.CheckpointLog(self.home).lines() if self.home is not None else []
        events = self.control.audit_events(after=0)
        doc = {"format": EXPORT_FORMAT, "exported_at": _now(), "events": events,
               "checkpoints": lines}  # fmt: skip
        publish(out, json.dumps(doc, separators=(",", ":")))
        return {"out": str(out), "events": len(events), "checkpoint_lines": len(lines)}
