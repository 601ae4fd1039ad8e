"""What the audit chain costs the control plane as decisions pile up.

    python -m benchmarks.control_plane [--quick] [--decisions N ...] [--out DIR]

Logs N decisions as the decision log writes them (batches of 8 requests, as group
commit gives them at concurrency 8, each with its audit event), then times a dashboard page load, `falaj status` and
`falaj audit verify`, each after one more batch (so there is something new to verify),
against `audit verify --full`, which re-hashes the whole chain as every page load did
before verification became incremental. The ratio full / incremental is the saving; the
dashboard and status times should stay flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from appliance.auth import Actor
from appliance.cli import cli
from appliance.core import Appliance
from appliance.serving.decision_log import records_sha256
from benchmarks import _harness
from webui import create_app

ACTOR = Actor("bench", "control-plane")
REQUESTS_PER_BATCH = 8


def decisions(n: int, model: str = "credit_risk") -> pa.Table:
    now_us = time.time_ns() // 1000
    return pa.table(
        {
            "ts": pa.array(np.full(n, now_us, dtype=np.int64), pa.timestamp("us")),
            "request_id": pa.array([uuid.uuid4().hex for _ in range(n)], pa.string()),
            "row_in_request": pa.array(np.zeros(n, dtype=np.int32)),
            "actor": pa.array(["bench:load"] * n, pa.string()),
            "model": pa.array([model] * n, pa.string()),
            "version": pa.array(np.ones(n, dtype=np.int32)),
            "slot": pa.array(["blue"] * n, pa.string()),
            "input_fingerprint": pa.array(["0" * 64] * n, pa.string()),
            "output": pa.array(np.random.default_rng(0).uniform(size=n)),
            "latency_ms": pa.array(np.full(n, 0.3)),
        }
    )


def fill(app: Appliance, n: int, chunk: int = 2_000) -> None:
    """Log n decisions, one row per request, REQUESTS_PER_BATCH requests per batch, each
    batch with its records' hash and its own audit event, as the decision log writes
    them; ``chunk`` batches share a transaction, so filling 1M takes minutes, not hours."""
    rows = decisions(n)
    starts = list(range(0, n, REQUESTS_PER_BATCH))
    for c in range(0, len(starts), chunk):
        batches = []
        at = datetime.now(UTC).replace(tzinfo=None)
        with app.features.transaction() as tx:
            for start in starts[c : c + chunk]:
                part = rows.slice(start, min(REQUESTS_PER_BATCH, n - start))
                batch_id, digest = uuid.uuid4().hex, records_sha256(part)
                tx.append_decisions(part, batch_id, part.num_rows, digest, at, answered=False)
                batches.append((batch_id, part.num_rows, digest))
        with app.control.transaction() as tx:
            for batch_id, count, digest in batches:
                tx.append_audit(ACTOR, "decisions.logged", batch_id,
                                {"rows": count, "requests": count, "records_sha256": digest})  # fmt: skip


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="falaj-bench-") as tmp:
        home = Path(tmp) / "home"
        app = Appliance.open({"home": str(home), "demo_rows": 5000})
        app.init(ACTOR)
        app.load_demo(ACTOR)
        t_fill = timed(lambda: fill(app, n))
        events = app.control.audit_count()
        t_full = timed(lambda: app.audit.verify(ACTOR, full=True))
        client = create_app(app, {"TESTING": True}).test_client()
        token = app.auth.create_token("bench", "admin", ACTOR)["token"]
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"  # every page needs one
        fill(app, REQUESTS_PER_BATCH)
        t_page = timed(lambda: client.get("/"))
        fill(app, REQUESTS_PER_BATCH)
        t_verify = timed(lambda: app.audit.verify(ACTOR))
        app.close()
        runner = CliRunner()
        t_status = timed(lambda: runner.invoke(cli, ["--home", str(home), "status", "--json"]))
        t_cli_verify = timed(lambda: runner.invoke(cli, ["--home", str(home), "audit", "verify"]))
        t_cli_full = timed(
            lambda: runner.invoke(cli, ["--home", str(home), "audit", "verify", "--full"])
        )
    return {
        "decisions": n,
        "audit_events": events,
        "fill_s": t_fill,
        "dashboard_s": t_page,
        "status_cli_s": t_status,
        "verify_incremental_s": t_verify,
        "verify_full_s": t_full,
        "verify_cli_s": t_cli_verify,
        "verify_full_cli_s": t_cli_full,
        "full_over_incremental": t_full / max(t_verify, 1e-9),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.control_plane", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a small smoke pass (used by make test)")
    p.add_argument("--decisions", type=int, nargs="*", help="default: 10,000 and 1,000,000")
    p.add_argument("--out", type=Path, help="results folder (default ./benchmark-results)")
    args = p.parse_args(argv)
    sizes = args.decisions or ([2_000] if args.quick else [10_000, 1_000_000])
    print(f"{'decisions':>10} {'events':>8} {'dashboard':>10} {'status':>8} "
          f"{'verify':>8} {'--full':>8}  full/incremental")  # fmt: skip
    rows = []
    for n in sizes:
        r = measure(n)
        rows.append(r)
        print(f"{n:>10,} {r['audit_events']:>8,} {r['dashboard_s']:>9.3f}s {r['status_cli_s']:>7.3f}s "
              f"{r['verify_incremental_s']:>7.4f}s {r['verify_full_s']:>7.3f}s  "
              f"{r['full_over_incremental']:>8.0f}x")  # fmt: skip
    tag = "control_plane-quick" if args.quick else "control_plane"
    out = _harness.results_dir(args.out) / f"{tag}.json"
    out.write_text(json.dumps({"meta": _harness.meta(), "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
