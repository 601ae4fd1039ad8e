"""The prediction endpoint against a hand-rolled scikit-learn server, in the same run.

    python -m benchmarks.serving [--quick] [--requests N]

Both servers run under waitress in this process, on 127.0.0.1, and get the same
keep-alive requests one at a time. The baseline is what a user would otherwise write
(Flask + a fitted scikit-learn pipeline, MLflow's pyfunc server minus its extras). Falaj
does more per request: it validates every field, verifies nothing is stale, logs every
prediction to the encrypted feature store and writes an audit event, each committed
before the answer; the ratio shows what that costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import waitress.server
from flask import Flask, jsonify, request

from appliance import demo
from appliance.audit import Actor
from appliance.core import Appliance
from benchmarks import _harness
from webui import create_app

ACTOR = Actor("bench", "serving")


def serve(wsgi_app) -> tuple[int, threading.Thread, object]:
    server = waitress.server.create_server(wsgi_app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server.effective_port, thread, server


def baseline_app(X: np.ndarray, y: np.ndarray, features: list[str]) -> Flask:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    app = Flask("baseline")

    @app.post("/predict")
    def predict():
        records = request.get_json()["records"]
        M = np.array([[r[f] for f in features] for r in records], dtype=float)
        return jsonify({"predictions": pipe.predict_proba(M)[:, 1].tolist()})

    return app


def timed_requests(port: int, path: str, body: bytes, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    times = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {data[:200]!r}")
        if i >= 3:  # the first requests warm caches and JIT
            times.append(time.perf_counter() - t0)
    conn.close()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few requests, as a smoke test")
    p.add_argument("--requests", type=int, default=300, help="requests per batch size")
    args = p.parse_args(argv)
    n = 5 if args.quick else args.requests

    with tempfile.TemporaryDirectory() as tmp:
        app = Appliance.open({"home": str(Path(tmp) / "home")})
        app.init(ACTOR)
        path = demo.write(Path(tmp) / "credit.parquet", 5000)
        app.ingest(path, "loans", "customer_id", "event_time", ACTOR)
        app.train("loans", "default", "credit", ACTOR)
        app.deploy("credit", 1, ACTOR)
        model = app.server.get("credit").live
        table = demo.credit_risk(5000)
        X = np.column_stack([table[f].to_numpy().astype(float) for f in model.features])
        y = table["default"].to_numpy()

        ours_port, _, ours = serve(create_app(app))
        base_port, _, base = serve(baseline_app(X, y, model.features))
        rows = []
        print(
            f"{'batch':>6} {'falaj p50':>11} {'p99':>9} {'baseline p50':>13} {'p99':>9}  baseline/falaj"
        )
        try:
            for batch in (1, 100, 1000):
                records = [
                    {f: float(X[i % len(X), j]) for j, f in enumerate(model.features)}
                    for i in range(batch)
                ]
                body = json.dumps({"records": records}).encode()
                ours_t = timed_requests(ours_port, "/api/v1/models/credit/predict", body, n)
                base_t = timed_requests(base_port, "/predict", body, n)
                row = {
                    "kernel": "serving_predict",
                    "rows": batch,
                    "ours_s": statistics.median(ours_t),
                    "ours_p99_s": float(np.percentile(ours_t, 99)),
                    "rivals": {"flask+sklearn": statistics.median(base_t)},
                    "rival_p99_s": {"flask+sklearn": float(np.percentile(base_t, 99))},
                }
                row["speedup"] = {k: v / row["ours_s"] for k, v in row["rivals"].items()}
                rows.append(row)
                print(
                    f"{batch:>6} {row['ours_s'] * 1e3:>9.2f}ms {row['ours_p99_s'] * 1e3:>7.2f}ms "
                    f"{row['rivals']['flask+sklearn'] * 1e3:>11.2f}ms {row['rival_p99_s']['flask+sklearn'] * 1e3:>7.2f}ms"
                    f"  x{row['speedup']['flask+sklearn']:.2f}"
                )
        finally:
            for server in (ours, base):
                server.task_dispatcher.shutdown()  # finish in-flight requests, then close
                server.close()
            app.close()
    out = _harness.write(rows, "serving-quick" if args.quick else "serving")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
