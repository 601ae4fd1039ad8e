"""Release switches under load: does a canary start, a promote or a rollback lose a
request, and what do they do to latency?

    python -m benchmarks.release_switch [--quick] [--rate R] [--phase S]

A home with credit@1 live and credit@2 registered (other inputs) is served by
`falaj run` (durable decision log, 8 worker threads). A load generator in this process
posts single-record predictions at a steady rate (open loop: request i is due at
t0 + i/R, and its latency counts from when it was due, so a stall shows in full),
each with an ``X-Falaj-Key`` from 1,000 customers. Meanwhile, each after a steady
phase, these run as separate `falaj` processes, the way an operator would:

    release start credit --version 2 --strategy canary --percent 50
    release promote credit
    rollback credit                      (blue/green back to v1)
    release start credit --version 2 --strategy shadow
    release rollback credit

The server notices each change through control.db and loads the candidate while it
goes on answering. The first two seconds of load (connections, caches) are not counted. Reported: failed requests (target 0) overall and per switch, and
p99 latency of the requests due during each switch (from its command's start to one
second after it returned) against the p99 of the steady requests (target <= 2x), plus
which versions answered around each switch. A full run writes
benchmarks/results/release_switch.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance import demo
from appliance.auth import Actor
from appliance.core import Appliance
from benchmarks import _harness
from benchmarks.serving import NUMERIC, Falaj

ACTOR = Actor("bench", "release_switch")
PATH = "/api/v1/models/credit/predict"
KEYS = 1000
WORKERS = 16  # client connections: enough that a slow answer does not delay the next due
AFTER_S = 1.0  # a switch's window runs this long after its command returned
WARMUP_S = 2.0  # the first seconds of load (connections, caches) are not counted
SWITCHES = [
    ("canary start", ["release", "start", "credit", "--version", "2", "--strategy", "canary",
                      "--percent", "50"]),
    ("promote", ["release", "promote", "credit"]),
    ("rollback (blue/green)", ["rollback", "credit"]),
    ("shadow start", ["release", "start", "credit", "--version", "2", "--strategy", "shadow"]),
    ("release rollback", ["release", "rollback", "credit"]),
]  # fmt: skip


AUTH: dict[str, str] = {}  # the Authorization header of the home's admin token (build_home)


def build_home(tmp: Path) -> tuple[Path, list[dict]]:
    """credit@1 (every numeric input) live, credit@2 (five of them) registered."""
    home = tmp / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        data = demo.write(tmp / "credit.parquet", 5000)
        app.ingestion.ingest(data, "loans", "customer_id", "event_time", ACTOR)
        app.training.train("loans", "default", "credit", ACTOR, features=NUMERIC)
        app.training.train("loans", "default", "credit", ACTOR, features=NUMERIC[:5])
        app.serving.deploy("credit", 1, ACTOR)
        # every route but /healthz needs a credential: the load sends an admin token
        AUTH["Authorization"] = f"Bearer {app.auth.create_token('bench', 'admin', ACTOR)['token']}"
    finally:
        app.close()
    table = demo.credit_risk(200)
    records = [{f: float(table[f][i].as_py()) for f in NUMERIC} for i in range(200)]
    return home, records


class Load:
    """Open-loop load at ``rate`` requests/s until stopped; every request's due time,
    latency from it, status and answering version."""

    def __init__(self, port: int, rate: float, records: list[dict]) -> None:
        self.port, self.rate = port, rate
        self.bodies = [json.dumps({"records": [r]}).encode() for r in records]
        self.results: list[tuple[float, float, int, int | None, str | None]] = []
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.t0 = 0.0

    def _worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while True:
            with self._lock:
                i = self._next
                self._next += 1
            due = self.t0 + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if self._stop.is_set():
                break
            body = self.bodies[i % len(self.bodies)]
            headers = {"Content-Type": "application/json", "X-Falaj-Key": f"c{i % KEYS}"} | AUTH
            status, version, variant = 0, None, None
            try:
                conn.request("POST", PATH, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if status == 200:
                    answer = json.loads(data)
                    version, variant = answer["version"], answer["variant"]
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            latency = time.perf_counter() - due
            with self._lock:
                self.results.append((due - self.t0, latency, status, version, variant))
        conn.close()

    def start(self) -> None:
        self.t0 = time.perf_counter() + 0.2
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(WORKERS)]
        for t in self.threads:
            t.start()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(60)


def falaj(home: Path, args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "appliance", "--home", str(home), *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"falaj {' '.join(args)}: {out.stderr.strip()}")


def summarize(label: str, rows: list[tuple], steady_p99: float | None = None) -> dict[str, Any]:
    lat = np.array([r[1] for r in rows if r[2] == 200]) * 1e3
    failed = sum(r[2] != 200 for r in rows)
    versions: dict[str, int] = {}
    for r in rows:
        if r[3] is not None:
            versions[f"v{r[3]} {r[4]}"] = versions.get(f"v{r[3]} {r[4]}", 0) + 1
    out = {
        "phase": label,
        "requests": len(rows),
        "failed": failed,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "answered_by": versions,
    }
    if steady_p99 and out["p99_ms"] is not None:
        out["p99_vs_steady"] = round(out["p99_ms"] / steady_p99, 2)
        out["target"] = "0 failed, p99 <= 2x steady"
        out["met"] = failed == 0 and out["p99_vs_steady"] <= 2.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.release_switch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a short smoke pass")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests/s (default 25; quick 20): what a 2-core box sustains with durable decisions",
    )
    p.add_argument("--phase", type=float, default=None,
                   help="steady seconds before each switch (default 5; quick 1.5)")  # fmt: skip
    args = p.parse_args(argv)
    rate = args.rate or (20.0 if args.quick else 25.0)
    phase = args.phase or (1.5 if args.quick else 5.0)
    os.environ.pop("FALAJ_DECISION_LOG", None)
    with tempfile.TemporaryDirectory(prefix="falaj-bench-") as tmp:
        home, records = build_home(Path(tmp))
        server = Falaj(home, "durable")
        load = Load(server.port, rate, records)
        windows = []
        try:
            load.start()
            time.sleep(WARMUP_S)
            for label, cmd in SWITCHES:
                time.sleep(phase)
                t_start = load.now()
                falaj(home, cmd)
                windows.append((label, t_start, load.now() + AFTER_S))
                print(f"{label}: {load.now() - t_start:.2f} s", file=sys.stderr)
            time.sleep(phase)
        finally:
            load.stop()
            server.stop()
    results = sorted(r for r in load.results if r[0] >= WARMUP_S)
    inside = [any(a <= r[0] <= b for _, a, b in windows) for r in results]
    steady = summarize("steady", [r for r, w in zip(results, inside, strict=True) if not w])
    rows = [summarize("all", results) | {"rate_per_s": rate, "load_avg_1m": os.getloadavg()[0],
                                         "cpus": os.cpu_count()}, steady]  # fmt: skip
    for label, a, b in windows:
        rows.append(summarize(label, [r for r in results if a <= r[0] <= b], steady["p99_ms"])
                    | {"window_s": round(b - a, 2)})  # fmt: skip
    print(
        f"{'phase':<22} {'requests':>8} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} {'x steady':>8}"
    )
    for r in rows:
        print(f"{r['phase']:<22} {r['requests']:>8} {r['failed']:>6} {r['p50_ms'] or 0:>8.2f} "
              f"{r['p99_ms'] or 0:>8.2f} {r.get('p99_vs_steady', ''):>8}  {r['answered_by']}")  # fmt: skip
    out = _harness.write(rows, "release_switch-quick" if args.quick else "release_switch")
    print(f"wrote {out}")
    missed = [r["phase"] for r in rows if r.get("met") is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
