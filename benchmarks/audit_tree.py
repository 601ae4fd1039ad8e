"""The audit chain's Merkle tree: what a root, a proof and a checkpoint cost at 100k
events, against recomputing the tree from every leaf each time (RFC 6962's recursion,
what a straightforward implementation does).

    python -m benchmarks.audit_tree [--quick] [--events N] [--store]

In memory: leaf hashes for N events; ``Tree`` (perfect subtrees kept level by level)
builds once, then each new checkpoint extends it by the events since the last and
takes a root; the naive way recomputes the root from all N leaves. Likewise an
inclusion proof for a receipt and a consistency proof between two checkpoints.
``--store``: the same through control.db with N real events: the first checkpoint of a
process (reads every event's hash, builds the tree), the next after 100 more events,
and `audit verify` against it. Also the decision log's extra cost per batch: the
records' Merkle root beside the batch hash it already computed (11,000 one-row
decisions; both from one sort, ``batch_hashes``). Writes benchmarks/results/audit_tree.json (not with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audit import merkle
from benchmarks import _harness


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 6962 §2.1.1, every subtree recomputed."""
    if len(leaves) <= 1:
        return []
    k = merkle._split(len(leaves))
    if index < k:
        return naive_path(index, leaves[:k]) + [merkle.naive_root(leaves[k:])]
    return naive_path(index - k, leaves[k:]) + [merkle.naive_root(leaves[:k])]


def in_memory(n: int, repeat: int) -> list[dict[str, Any]]:
    leaves = [merkle.leaf_hash(os.urandom(32)) for _ in range(n + 100)]
    base, fresh = leaves[:n], leaves[n:]
    build = best(lambda: merkle.Tree(base), repeat)
    tree = merkle.Tree(base)

    def checkpoint_ours():
        t = merkle.Tree()
        t._levels = [bytearray(lv) for lv in tree._levels]  # the process's warm tree
        t0 = time.perf_counter()
        t.extend(fresh)
        t.root()
        return time.perf_counter() - t0

    ours = min(checkpoint_ours() for _ in range(repeat))
    naive = best(lambda: merkle.naive_root(leaves), repeat)
    assert merkle.naive_root(leaves) == merkle.Tree(leaves).root()
    i = n // 3
    proof_ours = best(lambda: tree.inclusion(i), repeat)
    proof_naive = best(lambda: naive_path(i, base), repeat)
    assert naive_path(i, base) == tree.inclusion(i)
    m = n - n // 7
    cons_ours = best(lambda: tree.consistency(m, n), repeat)
    cons_naive = best(lambda: (merkle.naive_root(base[:m]), merkle.Tree(base).consistency(m, n)),
                      repeat)  # fmt: skip
    return [
        {"case": f"tree build, {n:,} events (once per process)", "ours_s": build},
        {"case": f"checkpoint root, {n:,} + 100 events", "ours_s": ours, "naive_s": naive},
        {"case": f"inclusion proof, {n:,} events", "ours_s": proof_ours, "naive_s": proof_naive},
        {"case": f"consistency proof {m:,} -> {n:,}", "ours_s": cons_ours, "naive_s": cons_naive},
    ]


def through_store(n: int) -> list[dict[str, Any]]:
    from appliance.auth import Actor
    from appliance.core import Appliance

    actor = Actor("bench", "audit_tree")
    home = Path(tempfile.mkdtemp(prefix="falaj-bench-audit-")) / "home"
    app = Appliance.open({"home": str(home)})
    app.init(actor)
    with app.control.transaction() as tx:
        for i in range(n):
            tx.append_audit(actor, "bench.event", f"e{i}", {"i": i})
    app.audit.verify(actor)
    app.close()
    out = []
    app = Appliance.open({"home": str(home)})
    try:
        t0 = time.perf_counter()
        app.audit.checkpoint(actor)
        out.append({"case": f"first checkpoint of a process, {n:,} events in control.db",
                    "ours_s": time.perf_counter() - t0})  # fmt: skip
        with app.control.transaction() as tx:
            for i in range(100):
                tx.append_audit(actor, "bench.event", f"more{i}", {})
        t0 = time.perf_counter()
        app.audit.checkpoint(actor)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        hashes = app.control.audit_hashes()
        naive = merkle.naive_root([merkle.leaf_hash(bytes.fromhex(h)) for _, h in hashes])
        naive_s = time.perf_counter() - t0
        assert naive.hex() == app.audit.latest_checkpoint()["root"]
        out.append({"case": "next checkpoint, 100 events later", "ours_s": warm,
                    "naive_s": naive_s})  # fmt: skip
        t0 = time.perf_counter()
        assert app.audit.verify(actor).ok
        out.append(
            {"case": "audit verify against the checkpoint", "ours_s": time.perf_counter() - t0}
        )
        app.close()
        app = Appliance.open({"home": str(home)})
        app.control  # noqa: B018 -- opened, migrations checked: not timed
        t0 = time.perf_counter()
        assert app.audit.verify(actor).ok
        out.append({"case": "... in a new process (counts the table's rows once)",
                    "ours_s": time.perf_counter() - t0})  # fmt: skip
        t0 = time.perf_counter()
        assert app.audit.verify(actor, full=True).ok
        out.append({"case": "audit verify --full (every hash, every root)",
                    "ours_s": time.perf_counter() - t0})  # fmt: skip
    finally:
        app.close()
    return out


def decision_batch(rows: int, repeat: int) -> list[dict[str, Any]]:
    from appliance.serving.decision_log import (
        Decisions,
        batch_hashes,
        decisions_table,
        records_sha256,
    )

    rng = np.random.default_rng(0)
    parts = [Decisions(1_700_000_000_000_000 + i, os.urandom(16).hex(), "bench:x", "credit", 1,
                       "blue", [os.urandom(32).hex()], rng.random(1), 0.5,
                       inputs=rng.random((1, 8)))  # fmt: skip
             for i in range(rows)]  # fmt: skip
    table = decisions_table(parts)
    sha = best(lambda: records_sha256(table, 2), repeat)
    both = best(lambda: batch_hashes(table), repeat)
    return [{"case": f"decision batch of {rows:,}: records_sha256 alone (before)", "ours_s": sha},
            {"case": f"decision batch of {rows:,}: records_sha256 + records_root (now)",
             "ours_s": both}]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.audit_tree", description=__doc__)
    p.add_argument("--quick", action="store_true", help="10k events, no file written")
    p.add_argument("--events", type=int, default=None, help="events (default 100,000)")
    p.add_argument("--store", action="store_true", help="also through a real control.db")
    args = p.parse_args(argv)
    n = args.events or (10_000 if args.quick else 100_000)
    repeat = 1 if args.quick else 3
    rows = in_memory(n, repeat)
    if args.store:
        rows += through_store(n)
    rows += decision_batch(1_000 if args.quick else 11_000, repeat)
    print(f"{'case':<62} {'ours':>10} {'naive':>10} {'ratio':>8}")
    for r in rows:
        naive = r.get("naive_s")
        if naive:
            r["ratio"] = naive / r["ours_s"] if r["ours_s"] else None
        print(f"{r['case']:<62} {r['ours_s'] * 1e3:>8.2f}ms "
              + (f"{naive * 1e3:>8.2f}ms {r['ratio']:>7.0f}x" if naive else ""))  # fmt: skip
    if not args.quick:
        path = _harness.results_dir() / "audit_tree.json"
        path.write_text(json.dumps({"meta": _harness.meta(), "events": n, "rows": rows}, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
