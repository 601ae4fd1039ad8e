"""Date-time parts and per-entity rolling windows: against Python's datetime and Polars."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from kernels.transforms import datetime_parts, rolling_aggregates

BACKENDS = ["reference", "cpu", "cuda"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_datetime_parts_match_python_datetime(backend):
    rng = np.random.default_rng(2)
    seconds = rng.integers(-(10**10), 10**10, 25)  # years 1653 to 2286
    got = datetime_parts(seconds, "s", backend=backend)
    for row, s in zip(got.tolist(), seconds.tolist(), strict=True):
        d = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=s)
        assert row == [d.year, d.month, d.day, d.weekday(), d.hour, d.timetuple().tm_yday]


@pytest.mark.parametrize("backend", BACKENDS)
def test_datetime64_of_any_unit_and_nat(backend):
    t = np.array(["2024-02-29T13:45", "NaT", "1969-12-31T23:59"], dtype="datetime64[m]")
    got = datetime_parts(t, backend=backend)
    assert got.tolist() == [[2024, 2, 29, 3, 13, 60], [-1] * 6, [1969, 12, 31, 2, 23, 365]]
    ns = t.astype("datetime64[ns]")
    np.testing.assert_array_equal(datetime_parts(ns, backend=backend), got)
    ms = ns[[0, 2]].astype(np.int64) // 1_000_000
    np.testing.assert_array_equal(datetime_parts(ms, unit="ms", backend=backend), got[[0, 2]])
    assert datetime_parts(np.zeros(0, dtype=np.int64), backend=backend).shape == (0, 6)


def test_datetime_parts_reject_what_is_not_time():
    with pytest.raises(ValueError, match="datetime64 or integer epoch counts"):
        datetime_parts(np.array([1.5]))
    with pytest.raises(ValueError, match="unit='d' is not one of"):
        datetime_parts(np.array([1]), unit="d")


def polars_rolling(entity, time, values, window):
    df = pl.DataFrame({"e": entity, "t": time, "v": values})
    out = df.rolling(index_column="t", period=f"{window}i", group_by="e", closed="right").agg(
        pl.col("v").count().alias("count"),
        pl.col("v").sum().alias("sum"),
        pl.col("v").mean().alias("mean"),
        pl.col("v").min().alias("min"),
        pl.col("v").max().alias("max"),
    )
    want = out.select(["count", "sum", "mean", "min", "max"]).to_numpy().astype(np.float64)
    # a window without values sums to 0 (ours, and Polars 2); Polars 1 gives null there
    want[want[:, 0] == 0, 1] = 0.0
    return want


@pytest.mark.parametrize("backend", BACKENDS)
def test_rolling_matches_polars(backend):
    rng = np.random.default_rng(4)
    n = 40
    entity = np.sort(rng.integers(0, 4, n))
    time = rng.integers(0, 30, n)
    order = np.lexsort((time, entity))
    entity, time = entity[order], time[order]
    values = rng.normal(size=n)
    values[::9] = np.nan
    got = rolling_aggregates(entity, time, values, 5, backend=backend)
    want = polars_rolling(entity, time, pl.Series(values).fill_nan(None), 5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rolling_window_by_hand(backend):
    entity = np.array([1, 1, 1, 1, 2, 2])
    time = np.array(
        [
            "2024-01-01T00",
            "2024-01-01T01",
            "2024-01-01T01",
            "2024-01-01T03",
            "2024-01-01T00",
            "2024-01-01T05",
        ],
        dtype="datetime64[h]",
    )
    values = np.array([1.0, 2.0, np.nan, 4.0, 10.0, 20.0])
    got = rolling_aggregates(entity, time, values, np.timedelta64(2, "h"), backend=backend)
    nan = np.nan
    want = [
        [1, 1.0, 1.0, 1.0, 1.0],
        [2, 3.0, 1.5, 1.0, 2.0],  # the window is (t - 2h, t]: 00:00 is still in at 01:00
        [2, 3.0, 1.5, 1.0, 2.0],  # ties share a window; NaN is skipped
        [1, 4.0, 4.0, 4.0, 4.0],  # 01:00 is out at 03:00: (01:00, 03:00]
        [1, 10.0, 10.0, 10.0, 10.0],
        [1, 20.0, 20.0, 20.0, 20.0],  # another entity never leaks in
    ]
    np.testing.assert_array_equal(got, np.array(want))
    only_nan = rolling_aggregates([1], [0], [nan], 1, backend=backend)
    np.testing.assert_array_equal(only_nan, [[0, 0.0, nan, nan, nan]])
    assert rolling_aggregates([], [], [], 3, backend=backend).shape == (0, 5)


def test_rolling_rejects_bad_input():
    with pytest.raises(ValueError, match="sorted by entity, then time; row 2"):
        rolling_aggregates([1, 1, 1], [0, 5, 4], [1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match="sorted by entity"):
        rolling_aggregates([2, 1], [0, 1], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="window must be a positive whole number"):
        rolling_aggregates([1], [0], [1.0], 0)
    with pytest.raises(ValueError, match="entity must hold integer keys"):
        rolling_aggregates(["a"], [0], [1.0], 1)
    with pytest.raises(ValueError, match="differ in length"):
        rolling_aggregates([1, 1], [0, 1], [1.0], 1)
