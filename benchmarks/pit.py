"""Point-in-time training sets: Falaj against DuckDB's ASOF JOIN, Polars and pandas.

    python -m benchmarks.pit [--quick] [--workload NAME ...] [--engine NAME ...] [--out DIR]

Each engine builds the same training set in the same run: a spine held in memory (entity,
timestamp, label, spine_id; in random order) joined, as of each spine row's time, to a
feature table in a Parquet file (entity, _event_time, _created_time, _seq, f0..f9) that
the engine reads itself (the read is timed). The result is the spine in its own order
with the ten features (and the matched event time, for the agreement check).

- falaj: ``point_in_time_index`` over the key columns, then ``take_features`` over the
  feature columns, both given the ``pq.ParquetFile`` and reading it a column and a row
  group at a time (appliance/features/pit.py);
- duckdb: the spine copied into a temporary table (timed; joining the registered Arrow
  table directly is 50-100x slower), ``ASOF LEFT JOIN read_parquet(...)`` ``ORDER BY
  spine_id`` (ASOF output is not in spine order), fetched as Arrow;
- polars: ``join_asof(by="entity", strategy="backward")`` after sorting the spine by time,
  then sorted back by spine_id;
- pandas: ``merge_asof(by="entity", direction="backward")``, likewise.

Competitors apply a TTL as a user would: features set to null where the matched event
time is before spine time - TTL. Workloads (issue 7): 10 float features with 5% nulls,
5% repeated event times (ties, broken by created time), 5% of spine entities without
features; sparse: S/10 entities, 20 rows each over a year, TTL 30 days; dense: S/100
entities, 1,000 rows each, no TTL; dense_ttl: the same with a 30-day TTL.

Each engine runs in its own subprocess (so imports and allocators do not mix); reported:
wall time of the join (read included), peak RSS of that process (VmHWM, reset after the
spine is built, so it counts the spine, the read, the join and the result) and ratios
against DuckDB. Every engine's cells are compared with Falaj's: a differing cell whose
matched event time equals Falaj's is a tie broken differently (DuckDB's ASOF does not
order rows with equal times), counted apart from real mismatches. Falaj itself is tested
against a brute-force reference in tests/kernels/test_pit.py.

Target (issue 7) at the largest size of each workload: at least 2x faster than DuckDB,
with at most half its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import _harness

FEATURES = [f"f{i}" for i in range(10)]
KEYS = ["entity", "_event_time", "_created_time", "_seq"]
ENGINES = ("falaj", "duckdb", "polars", "pandas")
YEAR_US = 365 * 86_400 * 1_000_000
START_US = 1_704_067_200 * 1_000_000  # 2024-01-01 UTC
TTL = timedelta(days=30)
# workload -> (entities per spine row, feature rows per entity, ttl)
WORKLOADS: dict[str, tuple[float, int, timedelta | None]] = {
    "sparse": (1 / 10, 20, TTL),
    "dense": (1 / 100, 1000, None),
    "dense_ttl": (1 / 100, 1000, TTL),
}
SIZES = {"sparse": [1_000_000, 10_000_000], "dense": [100_000, 1_000_000],
         "dense_ttl": [100_000, 1_000_000]}  # fmt: skip
QUICK_SIZES = {"sparse": [20_000], "dense": [5_000], "dense_ttl": [5_000]}
TIMEOUT_S = 900  # per engine run


# -- data ---------------------------------------------------------------------------


def generate(workload: str, spine_rows: int, folder: Path, seed: int = 7) -> dict[str, Any]:
    """Write rows.parquet and spine.parquet for a workload into ``folder``."""
    per_spine, per_entity, _ = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    n_entities = max(1, int(spine_rows * per_spine))
    with_features = rng.permutation(n_entities)[: max(1, round(n_entities * 0.95))]
    entity = np.repeat(np.sort(with_features), per_entity).astype(np.int64)
    n = len(entity)
    event = START_US + rng.integers(0, YEAR_US // 1_000_000, n) * 1_000_000
    order = np.lexsort((event, entity))
    entity, event = entity[order], event[order]
    # 5% repeated event times: a row takes its predecessor's time (same entity)
    tie = rng.random(n) < 0.05
    tie[0] = False
    tie &= np.r_[False, entity[1:] == entity[:-1]]
    idx = np.arange(n)
    src = np.maximum.accumulate(np.where(tie, 0, idx))  # the run's first row
    event = event[src]
    created = event + rng.integers(0, 3_600, n) * 1_000_000  # known within the hour
    # the table as it was ingested: in time order, _seq numbering that order
    order = np.lexsort((created, event))
    entity, event, created = entity[order], event[order], created[order]
    del order, idx, src, tie
    columns: dict[str, Any] = {
        "entity": entity,
        "_event_time": pa.array(event, pa.timestamp("us")),
        "_created_time": pa.array(created, pa.timestamp("us")),
        "_seq": np.arange(n, dtype=np.int64),
    }
    del event, created
    for f in FEATURES:
        values = rng.standard_normal(n)
        columns[f] = pa.array(values, mask=rng.random(n) < 0.05)
    rows = pa.table(columns)
    del columns
    pq.write_table(rows, folder / "rows.parquet")
    del rows
    spine = pa.table(
        {
            "spine_id": np.arange(spine_rows, dtype=np.int64),
            "entity": rng.integers(0, n_entities, spine_rows).astype(np.int64),
            "ts": pa.array(
                START_US + rng.integers(0, YEAR_US // 1_000_000, spine_rows) * 1_000_000,
                pa.timestamp("us"),
            ),
            "label": rng.random(spine_rows),
        }
    )
    pq.write_table(spine, folder / "spine.parquet")
    return {"feature_rows": n, "entities": n_entities}


# -- the engines, each run in a child process --------------------------------------


def _falaj(spine: pa.Table, path: str, ttl: timedelta | None) -> pa.Table:
    from appliance.features.pit import point_in_time_index, take_features

    # the index reads only the key columns, a row group at a time into their buffers, and
    # frees them on return; the features are then gathered a column and a row group at a
    # time straight into the result's buffers
    rows = pq.ParquetFile(path)
    index = point_in_time_index(spine, "entity", "ts", rows, "entity", ttl=ttl)
    picked = take_features(rows, index, [*FEATURES, "_event_time"])
    del index
    for name in picked.column_names:
        spine = spine.append_column(name, picked[name])
    return spine


def _duckdb(spine: pa.Table, path: str, ttl: timedelta | None) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    # the spine copied into a DuckDB table first: ASOF JOIN straight off a registered
    # Arrow table is 50-100x slower (9.8 s against 0.18 s at 50k rows in DuckDB 1.4.4)
    con.register("spine_arrow", spine)
    con.execute("CREATE TEMP TABLE spine AS SELECT * FROM spine_arrow")
    con.unregister("spine_arrow")
    feats = ", ".join(f"f.{f}" for f in FEATURES)
    sql = (
        f"SELECT s.*, {feats}, f._event_time FROM spine s ASOF LEFT JOIN read_parquet(?) f "
        "ON s.entity = f.entity AND s.ts >= f._event_time ORDER BY s.spine_id"
    )
    out = con.execute(sql, [path]).fetch_arrow_table()
    con.close()
    return _ttl_filter(out, ttl)


def _ttl_filter(out: pa.Table, ttl: timedelta | None) -> pa.Table:
    """Null the features of matches older than the TTL, as a user of an engine without
    TTLs would (Arrow compute: the same post-filter for every competitor)."""
    if ttl is None:
        return out
    import pyarrow.compute as pc

    stale = pc.less(out["_event_time"], pc.subtract(out["ts"], pa.scalar(ttl, pa.duration("us"))))
    stale = stale.fill_null(False)
    for f in [*FEATURES, "_event_time"]:
        i = out.column_names.index(f)
        out = out.set_column(i, f, pc.if_else(stale, pa.nulls(1, out[f].type)[0], out[f]))
    return out


def _polars(spine: pa.Table, path: str, ttl: timedelta | None) -> pa.Table:
    import polars as pl

    rows = pl.read_parquet(path, columns=["entity", "_event_time", *FEATURES])
    left = pl.from_arrow(spine).sort("ts")
    out = left.join_asof(
        rows, left_on="ts", right_on="_event_time", by="entity", strategy="backward",
        coalesce=False,
    ).sort("spine_id")  # fmt: skip
    if ttl is not None:
        stale = pl.col("_event_time") < pl.col("ts") - ttl
        out = out.with_columns(
            [pl.when(stale).then(None).otherwise(pl.col(c)).alias(c)
             for c in [*FEATURES, "_event_time"]]
        )  # fmt: skip
    return out.select(spine.column_names + FEATURES + ["_event_time"]).to_arrow()


def _pandas(spine: pa.Table, path: str, ttl: timedelta | None) -> pa.Table:
    import pandas as pd

    rows = pd.read_parquet(path, columns=["entity", "_event_time", *FEATURES])
    left = spine.to_pandas().sort_values("ts", kind="stable")
    out = pd.merge_asof(
        left, rows, left_on="ts", right_on="_event_time", by="entity", direction="backward"
    ).sort_values("spine_id", kind="stable")
    if ttl is not None:
        stale = out["_event_time"] < out["ts"] - ttl
        out.loc[stale, [*FEATURES, "_event_time"]] = None
    return pa.Table.from_pandas(out, preserve_index=False)


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def child(engine: str, folder: Path, workload: str) -> dict[str, Any]:
    fn = {"falaj": _falaj, "duckdb": _duckdb, "polars": _polars, "pandas": _pandas}[engine]
    ttl = WORKLOADS[workload][2]
    spine = pq.read_table(folder / "spine.parquet")
    path = str(folder / "rows.parquet")
    if engine == "falaj":  # load the compiled kernels (Numba's cache) outside the timing
        _warm_falaj()
    else:
        __import__(engine)
    rss_before = _peak_rss()
    _reset_peak()
    t0 = time.perf_counter()
    out = fn(spine, path, ttl)
    wall = time.perf_counter() - t0
    peak = _peak_rss()
    pq.write_table(out.select([*FEATURES, "_event_time"]), folder / f"out-{engine}.parquet")
    return {"wall_s": wall, "peak_rss": peak, "rss_before": rss_before, "rows_out": out.num_rows}


def _warm_falaj() -> None:
    """Compile the Numba kernels once (cache=True), so no child times compilation."""
    from appliance.features.pit import point_in_time_join

    rows = pa.table(
        {
            "e": [1, 1, 2],
            "_event_time": pa.array([1, 2, 3], pa.timestamp("us")),
            "_created_time": pa.array([1, 2, 3], pa.timestamp("us")),
            "_seq": pa.array([0, 1, 2], pa.int64()),
            "x": [1.0, 2.0, 3.0],
        }
    )
    spine = pa.table({"e": [1, 2], "t": pa.array([2, 9], pa.timestamp("us"))})
    features = ["x", "_event_time"]  # both gathers: float64 and timestamp (int64) values
    point_in_time_join(spine, "e", "t", rows, "e", features, ttl=timedelta(1), created_cutoff=True)
    point_in_time_join(spine, "e", "t", rows, "e", features)


# -- comparing --------------------------------------------------------------------


def _as_float(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return col.cast(pa.float64()).fill_null(np.nan).to_numpy()


def compare(folder: Path, engine: str) -> dict[str, int]:
    """Cells differing from Falaj's: those of rows matched at the same event time (a tie
    broken another way) and the rest (real mismatches)."""
    ours = pq.read_table(folder / "out-falaj.parquet")
    theirs = pq.read_table(folder / f"out-{engine}.parquet")
    if ours.num_rows != theirs.num_rows:
        return {"cells": ours.num_rows * len(FEATURES), "tie_cells": 0, "mismatch_cells": -1}
    ev_ours, ev_theirs = _as_float(ours["_event_time"]), _as_float(theirs["_event_time"])
    same_time = (ev_ours == ev_theirs) | (np.isnan(ev_ours) & np.isnan(ev_theirs))
    ties = mismatches = 0
    for f in FEATURES:
        a, b = _as_float(ours[f]), _as_float(theirs[f])
        differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        ties += int(np.count_nonzero(differ & same_time))
        mismatches += int(np.count_nonzero(differ & ~same_time))
    return {"cells": ours.num_rows * len(FEATURES), "tie_cells": ties, "mismatch_cells": mismatches}


# -- the run ------------------------------------------------------------------------


def run_one(engine: str, folder: Path, workload: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.pit", "--child", engine, str(folder), workload]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        peak = 0
        try:  # the peak so far: a lower bound, like the time
            with open(f"/proc/{proc.pid}/status") as fh:
                peak = next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmHWM:"))
        except (OSError, StopIteration):
            pass
        proc.kill()
        proc.communicate()
        return {"error": f"did not finish in {timeout:.0f} s", "timeout_s": timeout,
                "peak_rss_at_timeout": peak}  # fmt: skip
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or [""]
        return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}
    return json.loads(out.strip().splitlines()[-1])


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes, as a smoke test (make test)")
    p.add_argument("--workload", nargs="*", choices=list(WORKLOADS), help="default: all three")
    p.add_argument("--engine", nargs="*", choices=list(ENGINES), help="default: all four")
    p.add_argument("--sizes", type=int, nargs="*", help="spine rows (default: the issue's)")
    p.add_argument("--out", type=Path, help="results folder")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S,
                   help=f"seconds per engine run (default {TIMEOUT_S})")  # fmt: skip
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        engine, folder, workload = args.child
        print(json.dumps(child(engine, Path(folder), workload)))
        return 0
    engines = [e for e in ENGINES if e in (args.engine or ENGINES)]
    if "falaj" not in engines:
        engines.insert(0, "falaj")  # the others are checked against it
    _warm_falaj()
    results: list[dict[str, Any]] = []
    head = f"{'workload':<10} {'spine':>10} {'rows':>11} {'engine':<7} {'wall s':>8} "
    head += f"{'peak GiB':>9} {'time/duckdb':>11} {'rss/duckdb':>10}  agreement with falaj"
    print(head, flush=True)
    for workload in args.workload or list(WORKLOADS):
        sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)[workload]
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="falaj-pit-") as tmp:
                folder = Path(tmp)
                shape = generate(workload, size, folder)
                runs = {e: run_one(e, folder, workload, args.timeout) for e in engines}
                duck = runs.get("duckdb", {})
                for engine in engines:
                    r = runs[engine]
                    row: dict[str, Any] = {"workload": workload, "spine_rows": size,
                                           "engine": engine, **shape, **r}  # fmt: skip
                    if "error" not in r and engine != "falaj" and "error" not in runs["falaj"]:
                        row["agreement"] = compare(folder, engine)
                    if "error" not in r and "wall_s" in duck:
                        row["time_vs_duckdb"] = r["wall_s"] / duck["wall_s"]
                        row["rss_vs_duckdb"] = r["peak_rss"] / duck["peak_rss"]
                    results.append(row)
                    print(format_row(row), flush=True)
    missed = [] if args.quick else check_targets(results)
    for line in missed:
        print("target missed:", line)
    tag = "pit-quick" if args.quick else ("pit" if not (args.workload or args.sizes) else
                                          "pit-partial")  # fmt: skip
    path = _harness.results_dir(args.out) / f"{tag}.json"
    doc = {"meta": _harness.meta(), "results": results, "targets_missed": missed}
    path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {path}")
    errors = [r for r in results if r["engine"] == "falaj" and "error" in r]
    bad = [r for r in results if r.get("agreement", {}).get("mismatch_cells")]
    return 1 if errors or bad else 0


def format_row(row: dict[str, Any]) -> str:
    start = f"{row['workload']:<10} {row['spine_rows']:>10,} {row['feature_rows']:>11,} "
    start += f"{row['engine']:<7} "
    if "error" in row:
        return start + row["error"]
    line = start + f"{row['wall_s']:>8.2f} {_gib(row['peak_rss']):>9} "
    if "time_vs_duckdb" in row:
        line += f"{row['time_vs_duckdb']:>11.2f} {row['rss_vs_duckdb']:>10.2f}  "
    else:
        line += f"{'':>11} {'':>10}  "
    if "agreement" in row:
        a = row["agreement"]
        line += f"{a['mismatch_cells']:,} mismatched, {a['tie_cells']:,} tie cells of "
        line += f"{a['cells']:,}"
    elif row["engine"] == "falaj":
        line += "(the reference)"
    return line


def check_targets(results: list[dict[str, Any]]) -> list[str]:
    """At the largest size of each workload: Falaj >= 2x faster than DuckDB, <= half its
    peak RSS."""
    missed = []
    largest: dict[str, int] = {}
    for r in results:
        largest[r["workload"]] = max(largest.get(r["workload"], 0), r["spine_rows"])
    for r in results:
        if r["engine"] != "falaj" or r["spine_rows"] != largest[r["workload"]]:
            continue
        if "time_vs_duckdb" not in r:
            continue
        where = f"{r['workload']} at {r['spine_rows']:,}"
        if r["time_vs_duckdb"] > 0.5:
            missed.append(f"{where}: {1 / r['time_vs_duckdb']:.2f}x faster than duckdb, needs 2x")
        if r["rss_vs_duckdb"] > 0.5:
            missed.append(f"{where}: peak RSS {r['rss_vs_duckdb']:.2f} of duckdb's, needs <= 0.5")
    return missed


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
