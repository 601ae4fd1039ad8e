"""Statistics kernels against NumPy, SciPy, scikit-learn, Polars and DuckDB SQL."""

from __future__ import annotations

import os

import numpy as np

from benchmarks._harness import Case
from kernels._backend import gpu_available
from kernels.stats import (
    ReferenceSummary,
    accuracy,
    drift,
    group_counts,
    histogram,
    log_loss,
    quantiles,
    roc_auc,
)

N_COLS = 20
N_REF = 200_000  # reference rows summarised once, as at training time


def _scipy_drift(ref: np.ndarray, cur: np.ndarray) -> None:
    """The Evidently way: four tests per column over the raw reference."""
    from scipy import stats
    from scipy.spatial import distance

    for c in range(cur.shape[1]):
        r, x = ref[:, c], cur[:, c]
        stats.ks_2samp(r, x)
        stats.wasserstein_distance(r, x) / max(np.std(r), 0.001)
        edges = np.histogram_bin_edges(np.r_[r, x], bins="sturges")
        rp = np.histogram(r, edges)[0] / r.size
        xp = np.histogram(x, edges)[0] / x.size
        distance.jensenshannon(rp, xp)
        rp, xp = np.where(rp == 0, 1e-4, rp), np.where(xp == 0, 1e-4, xp)
        np.sum((xp - rp) * np.log(xp / rp))


def _machine_note() -> str:
    """The CPU facts a drift time depends on: cores, and the SIMD level NumPy's sort
    runs at (x86-simd-sort has AVX-512 and AVX2 paths). drift's CPU path no longer
    sorts, but its times before 2026-11-30 did, and the reference backend still does."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # a NumPy without the private table
        features = {}
    simd = "AVX-512" if features.get("AVX512_SKX") else "AVX2" if features.get("AVX2") else "?"
    return f"{os.cpu_count()} cores, {simd}"


def cases(n_rows: int) -> list[Case]:
    import duckdb
    import polars as pl
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(min(N_REF, n_rows), N_COLS))
    cur = rng.normal(0.05, 1.0, size=(n_rows, N_COLS))
    summary = ReferenceSummary.fit(ref)
    x = cur[:, 0].copy()
    edges = np.linspace(-4, 4, 33)
    q = np.linspace(0, 1, 11)
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-x))).astype(np.uint8)
    y_pred = (x > 0).astype(np.uint8)
    group = rng.integers(0, 8, n_rows)
    frame = pl.DataFrame({"x": x, "y": y, "p": y_pred, "g": group})
    con = duckdb.connect()
    con.register("t", frame.to_arrow())

    def sql(query: str):
        return lambda: con.execute(query).fetchall()

    out = [
        Case(
            "drift_4_measures_x20",
            lambda: drift(summary, cur),
            rivals={"scipy_raw_reference": lambda: _scipy_drift(ref, cur)},
            bytes_moved=cur.nbytes,
            target="1M x 20 vs stored summary < 0.2 s" if n_rows == 1_000_000 else "",
            target_s=0.2 if n_rows == 1_000_000 else None,
            repeat=2,
            note=_machine_note,
        ),
        Case(
            "histogram_32_bins",
            lambda: histogram(x, edges),
            rivals={
                "numpy": lambda: np.histogram(x, edges),
                "duckdb_sql": sql(
                    "SELECT floor((x + 4) / 0.25) AS b, count(*) FROM t WHERE x BETWEEN -4 AND 4 GROUP BY b"
                ),
            },
            bytes_moved=x.nbytes,
            target="no slower than np.histogram at >= 1M rows" if n_rows >= 1_000_000 else "",
            target_vs={"numpy": 1.0} if n_rows >= 1_000_000 else None,
        ),
        Case(
            "quantiles_11",
            lambda: quantiles(x, q),
            rivals={
                "numpy": lambda: np.quantile(x, q),
                "polars": lambda: [frame["x"].quantile(v, "linear") for v in q],
                "duckdb_sql": sql(f"SELECT quantile_cont(x, {q.tolist()}) FROM t"),
            },
            bytes_moved=x.nbytes,
        ),
        Case(
            "roc_auc",
            lambda: roc_auc(y, x),
            rivals={"sklearn": lambda: roc_auc_score(y, x)},
            bytes_moved=x.nbytes + y.nbytes,
        ),
        Case(
            "fairness_group_counts",
            lambda: group_counts(y, y_pred, group),
            rivals={
                "numpy_bincount": lambda: [
                    np.bincount(group, weights=w, minlength=8)
                    for w in (None, y_pred, y, y & y_pred)
                ],
                "polars": lambda: frame.group_by("g").agg(
                    pl.len(),
                    pl.col("p").sum(),
                    pl.col("y").sum(),
                    (pl.col("y") * pl.col("p")).sum().alias("tp"),
                ),
                "duckdb_sql": sql(
                    "SELECT g, count(*), sum(p), sum(y), sum(y * p) FROM t GROUP BY g"
                ),
            },
            bytes_moved=y.nbytes + y_pred.nbytes + group.nbytes,
            target="1M rows < 20 ms" if n_rows == 1_000_000 else "",
            target_s=0.02 if n_rows == 1_000_000 else None,
        ),
    ]
    if n_rows <= SMALL_CASES_UP_TO:
        out += _small_cases(rng)
    if gpu_available():
        out += _gpu_cases(summary, cur, y, y_pred, group)
    return out


SMALL_CASES_UP_TO = 1_000_000  # the 1,000-row cases do not depend on n_rows: run them once


def _small_cases(rng: np.random.Generator) -> list[Case]:
    """Metrics on 1,000 rows, as the model server and the UI compute them: serial paths."""
    from sklearn import metrics as skm

    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(np.uint8)
    edges = np.linspace(0, 1, 11)
    return [
        Case(
            "roc_auc_1000",
            lambda: roc_auc(y, p),
            rivals={"sklearn": lambda: skm.roc_auc_score(y, p)},
            target="< 200 us",
            target_s=200e-6,
            repeat=100,
        ),
        Case(
            "log_loss_1000",
            lambda: log_loss(y, p),
            rivals={"sklearn": lambda: skm.log_loss(y, p)},
            target="< 200 us",
            target_s=200e-6,
            repeat=100,
        ),
        Case(
            "accuracy_1000",
            lambda: accuracy(y, p),
            rivals={"sklearn": lambda: skm.accuracy_score(y, p >= 0.5)},
            target="< 200 us",
            target_s=200e-6,
            repeat=100,
        ),
        Case(
            "histogram_1000",
            lambda: histogram(p, edges),
            rivals={"numpy": lambda: np.histogram(p, edges)},
            repeat=100,
        ),
    ]


def _gpu_cases(summary, cur, y, y_pred, group) -> list[Case]:
    import cupy

    dcur, dy, dp, dg = (cupy.asarray(a) for a in (cur, y, y_pred, group))

    def synced(fn):
        def run():
            fn()
            cupy.cuda.Device().synchronize()

        return run

    return [
        Case(
            "drift_4_measures_x20[cuda]",
            synced(lambda: drift(summary, dcur)),
            rivals={"cpu": lambda: drift(summary, cur)},
            bytes_moved=cur.nbytes,
            device="cuda",
        ),
        Case(
            "fairness_group_counts[cuda]",
            synced(lambda: group_counts(dy, dp, dg)),
            rivals={"cpu": lambda: group_counts(y, y_pred, group)},
            bytes_moved=y.nbytes + y_pred.nbytes + group.nbytes,
            device="cuda",
        ),
    ]
