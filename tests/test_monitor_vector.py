"""The monitor vector: a model's raw inputs as monitoring compares them with training
(numeric as is, categories as their index among the fitted ones, dates as epoch seconds)."""

import numpy as np
import pytest

from appliance.registry.model import _LegacyPipeline
from appliance.training import pipeline as pl
from appliance.training.pipeline import Input, Pipeline
from kernels.transforms import StandardScaler

N = 400


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(11)
    age = rng.normal(40, 10, N)
    age[::10] = np.nan
    region = np.array([f"r{i}" for i in rng.integers(0, 4, N)], dtype=object)
    region[::7] = None
    city = np.array([f"c{i:02d}" for i in rng.integers(0, 40, N)], dtype=object)
    zipcode = np.array([f"z{i}" for i in rng.integers(0, 5000, N)], dtype=object)
    opened = rng.integers(0, 1_700_000_000_000_000, N).astype("datetime64[us]")
    opened[::9] = np.datetime64("NaT")
    columns = {"age": age, "region": region, "city": city, "zip": zipcode, "opened": opened}
    inputs = [Input("age", "numeric"), Input("region", "categorical"),
              Input("city", "categorical"), Input("zip", "categorical"),
              Input("opened", "datetime")]  # fmt: skip
    y = (rng.random(N) < 0.3).astype(float)
    saved, pl.TARGET_MAX = pl.TARGET_MAX, 100  # zip's ~370 categories: hashed
    try:
        return Pipeline.fit(columns, inputs, y, seed=1), columns
    finally:
        pl.TARGET_MAX = saved


def test_each_role_has_its_documented_value(fitted):
    p, _ = fitted
    kinds = {s["kind"] for s in p.to_dict()["steps"]}
    assert {"one_hot", "target", "hashing"} <= kinds  # every categorical encoding is covered
    records = [
        {"age": 31.5, "region": "r2", "city": "c07", "zip": "z12",
         "opened": "2024-05-01T00:00:00Z"},
        {"age": None, "region": None, "city": "nowhere", "zip": None, "opened": None},
        {"age": 1e300, "region": "r9", "city": "c00", "zip": "unseen", "opened": "1970-01-02"},
    ]  # fmt: skip
    v = p.monitor_vector(p.columns_from_records(records))
    assert v.dtype == np.float64 and v.shape == (3, 5)
    regions = sorted({"r0", "r1", "r2", "r3"})
    cities = p.steps[2].frequency.categories_.tolist()
    assert cities == sorted(cities)
    assert v[0].tolist()[:3] == [31.5, regions.index("r2"), cities.index("c07")]
    assert v[0, 4] == 1714521600.0
    assert v[2, 4] == 86400.0
    assert np.isnan(v[1, [0, 1, 3, 4]]).all() and v[1, 2] == -1.0
    assert v[2, :4].tolist() == [1e300, -1.0, 0.0, -1.0]


def test_many_rows_take_the_vectorised_path_with_the_same_values(fitted):
    p, columns = fitted
    many = p.monitor_vector(columns)  # N > FAST_ROWS: Arrow's dictionary encoding
    assert N > pl.FAST_ROWS
    one_by_one = np.vstack(
        [p.monitor_vector({k: c[i : i + 1] for k, c in columns.items()}) for i in range(0, N, 37)]
    )
    np.testing.assert_array_equal(many[::37], one_by_one)
    # nulls stay NaN; every present training category has its own index, none is unseen
    assert np.isnan(many[::7, 1]).all()
    present = ~np.isnan(many[:, 1:4])
    assert (many[:, 1:4][present] >= 0).all()
    assert np.isnan(many[::9, 4]).all()
    ok = ~np.isnan(columns["age"])
    np.testing.assert_array_equal(many[ok, 0], columns["age"][ok])


def test_it_survives_the_json_round_trip(fitted):
    p, columns = fitted
    again = Pipeline.from_dict(p.to_dict())
    np.testing.assert_array_equal(again.monitor_vector(columns), p.monitor_vector(columns))


def test_legacy_pipelines_give_their_numeric_columns():
    scaler = StandardScaler().fit(np.array([[1.0, 2.0], [3.0, 5.0]]))
    legacy = _LegacyPipeline(["a", "b"], None, scaler)
    v = legacy.monitor_vector({"a": np.array([1.0, np.nan]), "b": [4, 5]})
    np.testing.assert_array_equal(v, [[1.0, 4.0], [np.nan, 5.0]])
