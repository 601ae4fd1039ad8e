"""Feature transforms against NumPy, Polars and DuckDB on the same data, in the same run.

Elementwise transforms work on one float64 column with 5% NaN; encoders on int64 codes
with 16 categories; rolling windows on 1,000 entities with integer event times. With a
GPU, the ``[cuda]`` cases run the CUDA paths on CuPy data against CuPy's own operations
and our CPU path.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from benchmarks._harness import Case
from kernels._backend import gpu_available
from kernels.transforms import (
    FrequencyEncoder,
    MinMaxScaler,
    OneHotEncoder,
    QuantileClipper,
    SimpleImputer,
    StandardScaler,
    log1p,
    rolling_aggregates,
)

ELEMENTWISE_TARGET = ">= Polars, >= 2x NumPy at 10M rows (2 cores)"
ELEMENTWISE_VS = {"polars": 1.0, "numpy": 2.0}
TARGET_ROWS = 10_000_000  # the elementwise targets are stated for this size


def cases(n_rows: int) -> list[Case]:
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=n_rows)
    x[rng.random(n_rows) < 0.05] = np.nan
    X = x.reshape(-1, 1)
    df = pl.DataFrame({"x": x}, nan_to_null=False)
    con = duckdb.connect()
    con.register("t", df.to_arrow())
    out = _elementwise_cases(X, df, con, n_rows >= TARGET_ROWS) + _encoding_cases(rng, n_rows)
    out += _rolling_cases(rng, n_rows)
    if gpu_available():
        out += _gpu_cases(rng, X)
    return out


def _elementwise_cases(X: np.ndarray, df: pl.DataFrame, con, at_target_size: bool) -> list[Case]:
    x = X[:, 0]
    moved = X.nbytes * 2  # read one column, write one
    std = StandardScaler().fit(X)
    m, s = float(std.mean_[0]), float(std.scale_[0])
    mm = MinMaxScaler().fit(X)
    lo, span = float(mm.data_min_[0]), float(mm.data_range_[0])
    clipper = QuantileClipper(0.01, 0.99).fit(X)
    c_lo, c_hi = float(clipper.lower_[0]), float(clipper.upper_[0])
    imputer = SimpleImputer("mean").fit(X)
    fill = float(imputer.statistics_[0])
    col = pl.col("x")

    def case(name, ours, numpy_fn, polars_expr, sql):
        return Case(
            name,
            ours,
            rivals={
                "numpy": numpy_fn,
                "polars": lambda: df.select(polars_expr),
                "duckdb": lambda: con.execute(f"SELECT {sql} FROM t").fetchnumpy(),
            },
            bytes_moved=moved,
            target=ELEMENTWISE_TARGET if at_target_size else "",
            target_vs=ELEMENTWISE_VS if at_target_size else None,
        )

    return [
        case(
            "standard_scale_apply",
            lambda: std.transform(X),
            lambda: (X - std.mean_) / std.scale_,
            (col - m) / s,
            f"(x - {m!r}) / {s!r}",
        ),
        case(
            "min_max_apply",
            lambda: mm.transform(X),
            lambda: (X - mm.data_min_) / mm.data_range_,
            (col - lo) / span,
            f"(x - {lo!r}) / {span!r}",
        ),
        case("log1p", lambda: log1p(X), lambda: np.log1p(X), col.log1p(), "ln(1 + x)"),
        case(
            "quantile_clip_apply",
            lambda: clipper.transform(X),
            lambda: np.clip(X, clipper.lower_, clipper.upper_),
            col.clip(c_lo, c_hi),
            f"least(greatest(x, {c_lo!r}), {c_hi!r})",
        ),
        case(
            "impute_mean_apply",
            lambda: imputer.transform(X),
            lambda: np.where(np.isnan(x), fill, x),
            col.fill_nan(fill),
            f"CASE WHEN isnan(x) THEN {fill!r} ELSE x END",
        ),
    ]


def _encoding_cases(rng: np.random.Generator, n_rows: int) -> list[Case]:
    codes = rng.integers(0, 16, n_rows)
    cats = np.arange(16)
    df = pl.DataFrame({"c": codes})
    onehot = OneHotEncoder().fit(codes)
    freq = FrequencyEncoder().fit(codes)
    table = freq.frequencies_
    return [
        Case(
            "one_hot_16",
            lambda: onehot.transform(codes),
            rivals={
                "numpy": lambda: (codes[:, None] == cats).astype(np.float64),
                "polars": lambda: df.to_dummies("c").cast(pl.Float64),
            },
            bytes_moved=codes.nbytes + n_rows * 16 * 8,
            target=">= Polars to_dummies",
            target_vs={"polars": 1.0},
        ),
        Case(
            "frequency_encode_16",
            lambda: freq.transform(codes),
            rivals={
                "numpy": lambda: table[np.searchsorted(cats, codes)],
                "polars": lambda: df.select(
                    pl.col("c").replace_strict(cats, table, default=0.0, return_dtype=pl.Float64)
                ),
            },
            bytes_moved=codes.nbytes * 2,
            target=">= Polars replace_strict",
            target_vs={"polars": 1.0},
        ),
    ]


def _rolling_cases(rng: np.random.Generator, n_rows: int) -> list[Case]:
    n_entities = 1_000
    entity = np.sort(rng.integers(0, n_entities, n_rows))
    time = rng.integers(0, 10 * (n_rows // n_entities + 1), n_rows)
    order = np.lexsort((time, entity))
    entity, time = entity[order], time[order]
    values = rng.normal(size=n_rows)
    window = 50  # about 5 rows per window
    df = pl.DataFrame({"e": entity, "t": time, "v": values})
    con = duckdb.connect()
    con.register("r", df.to_arrow())
    v = pl.col("v")
    aggs = [
        v.count(),
        v.sum().alias("s"),
        v.mean().alias("m"),
        v.min().alias("lo"),
        v.max().alias("hi"),
    ]
    frame = f"PARTITION BY e ORDER BY t RANGE BETWEEN {window - 1} PRECEDING AND CURRENT ROW"
    sql = ", ".join(f"{f}(v) OVER w" for f in ("count", "sum", "avg", "min", "max"))
    return [
        Case(
            "rolling_5_aggs_by_entity",
            lambda: rolling_aggregates(entity, time, values, window),
            rivals={
                "polars": lambda: df.rolling(
                    index_column="t", period=f"{window}i", group_by="e", closed="right"
                ).agg(aggs),
                "duckdb": lambda: con.execute(
                    f"SELECT {sql} FROM r WINDOW w AS ({frame})"
                ).fetchnumpy(),
            },
            bytes_moved=n_rows * (8 * 3 + 8 * 5),
            target=">= Polars rolling, >= DuckDB window SQL",
            target_vs={"polars": 1.0, "duckdb": 1.0},
            repeat=2,
        )
    ]


def _gpu_cases(rng: np.random.Generator, X: np.ndarray) -> list[Case]:
    """The CUDA paths on CuPy data; rivals: CuPy's own operations and our CPU path."""
    import cupy

    def synced(fn):
        def run():
            fn()
            cupy.cuda.Device().synchronize()

        return run

    n_rows = X.shape[0]
    dX = cupy.asarray(X)
    std = StandardScaler().fit(dX)
    std_cpu = StandardScaler.from_dict(std.to_dict())
    std_cpu.backend = "cpu"
    m, s = cupy.asarray(std.mean_), cupy.asarray(std.scale_)
    dx, dq = dX[:, 0], cupy.asarray([0.01, 0.99])  # CuPy has no nanquantile
    codes = rng.integers(0, 16, n_rows)
    dcodes, dcats = cupy.asarray(codes), cupy.arange(16)
    onehot = OneHotEncoder().fit(codes)
    onehot_cpu = OneHotEncoder(backend="cpu").fit(codes)
    entity = np.sort(rng.integers(0, 1_000, n_rows))
    time = rng.integers(0, 10 * (n_rows // 1_000 + 1), n_rows)
    order = np.lexsort((time, entity))
    entity, time, values = entity[order], time[order], rng.normal(size=n_rows)
    d_entity, d_time, d_values = (cupy.asarray(a) for a in (entity, time, values))
    row = X[:1].copy()  # one request's row, as NumPy: what the model server transforms
    std_numpy = StandardScaler.from_dict(std.to_dict())
    std_numpy.backend = "reference"
    return [
        Case(
            "standard_scale_apply[cuda]",
            synced(lambda: std.transform(dX)),
            rivals={
                "cupy": synced(lambda: (dX - m) / s),
                "cpu": lambda: std_cpu.transform(X),
            },
            bytes_moved=X.nbytes * 2,
            device="cuda",
        ),
        Case(
            "quantile_clip_fit[cuda]",
            synced(lambda: QuantileClipper(0.01, 0.99).fit(dX)),
            rivals={
                "cupy_quantile": synced(lambda: cupy.quantile(dx[~cupy.isnan(dx)], dq)),
                "cpu": lambda: QuantileClipper(0.01, 0.99, backend="cpu").fit(X),
            },
            bytes_moved=X.nbytes,
            device="cuda",
            repeat=2,
        ),
        Case(
            "one_hot_16[cuda]",
            synced(lambda: onehot.transform(dcodes)),
            rivals={
                "cupy": synced(lambda: (dcodes[:, None] == dcats).astype(cupy.float64)),
                "cpu": lambda: onehot_cpu.transform(codes),
            },
            bytes_moved=codes.nbytes + n_rows * 16 * 8,
            device="cuda",
        ),
        Case(
            "rolling_5_aggs_by_entity[cuda]",
            synced(lambda: rolling_aggregates(d_entity, d_time, d_values, 50)),
            rivals={"cpu": lambda: rolling_aggregates(entity, time, values, 50, backend="cpu")},
            bytes_moved=n_rows * (8 * 3 + 8 * 5),
            device="cuda",
            repeat=2,
        ),
        Case(
            "standard_scale_1_row[cuda, numpy in]",
            lambda: std.transform(row),  # NumPy data, device auto: copied to the GPU
            rivals={"numpy_path": lambda: std_numpy.transform(row)},
            device="cuda",
            repeat=100,
        ),
    ]
