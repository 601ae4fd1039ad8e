"""The fitted pipeline and column roles: inference, encoders by cardinality, cross-fitted
target encoding, unseen values and nulls, date parts, JSON round trips, record checks."""

import json
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from appliance.errors import BadInput
from appliance.training import pipeline as pl
from appliance.training.pipeline import Input, Pipeline, columns_from_arrow
from appliance.training.roles import infer_roles, inputs_for
from kernels.stats import roc_auc
from kernels.transforms import DATETIME_PARTS, datetime_parts, hash_buckets

N = 1500


def _texts(rng, prefix: str, k: int, n: int = N) -> np.ndarray:
    return np.array([f"{prefix}{i}" for i in rng.integers(0, k, n)], dtype=object)


@pytest.fixture(scope="module")
def data():
    """Raw columns of every role and cardinality, with nulls, and a binary label."""
    rng = np.random.default_rng(7)
    age = rng.normal(40, 10, N)
    age[::10] = np.nan
    region = _texts(rng, "r", 4)
    region[::13] = None
    city = _texts(rng, "c", 60)
    zipcode = _texts(rng, "z", 100_000)
    opened = rng.integers(0, 1_700_000_000_000_000, N).astype("datetime64[us]")
    opened[::17] = np.datetime64("NaT")
    columns = {"age": age, "income": rng.lognormal(10, 1, N), "flat": np.full(N, 3.0),
               "region": region, "city": city, "zip": zipcode, "opened": opened}  # fmt: skip
    inputs = [Input("age", "numeric"), Input("income", "numeric"), Input("flat", "numeric"),
              Input("region", "categorical"), Input("city", "categorical"),
              Input("zip", "categorical"), Input("opened", "datetime")]  # fmt: skip
    y = (rng.random(N) < 0.3).astype(float)
    return columns, inputs, y


@pytest.fixture(scope="module")
def fitted(data):
    columns, inputs, y = data
    return Pipeline.fit_transform(columns, inputs, y, seed=3)


def _at(p: Pipeline, name: str) -> int:
    return p.feature_names_.index(name)


def _step(p: Pipeline, column: str) -> dict:
    return next(
        s for s in p.to_dict()["steps"] if column in (s.get("column"), *s.get("columns", ()))
    )


# ---------------------------------------------------------------- roles


@pytest.fixture(scope="module")
def table():
    n = 120
    rng = np.random.default_rng(1)
    return pa.table({
        "row": np.arange(n) + 1000,                       # dense, all distinct: a key
        "amount": rng.integers(0, 10**9, n),              # all distinct but sparse: a number
        "paid": rng.integers(0, 3, n),                    # ends in "id" but is no identifier
        "customer_id": rng.integers(0, 5, n),             # named as an identifier
        "accountId": [f"a{i % 7}" for i in range(n)],
        "score": rng.normal(size=n),
        "region": [["n", "s"][i % 2] for i in range(n)],
        "token": [f"t{i}" for i in range(n)],             # text, all distinct
        "segment": pa.array([f"s{i % 3}" for i in range(n)]).dictionary_encode(),
        "vip": rng.random(n) > 0.5,
        "opened": pa.array(np.arange(n) * 10**6, pa.timestamp("us", tz="UTC")),
        "born": pa.array(np.arange(n, dtype=np.int32), pa.int32()).cast(pa.date32()),
        "tags": [["a"]] * n,
        "blob": [b"x"] * n,
        "empty": pa.nulls(n, pa.float64()),
        "label": rng.integers(0, 2, n),
    })  # fmt: skip


def test_roles_are_inferred_from_types_names_and_distinct_values(table):
    roles = infer_roles(table, {"label"}, {})
    assert roles == {
        "row": "id", "amount": "numeric", "paid": "numeric", "customer_id": "id",
        "accountId": "id", "score": "numeric", "region": "categorical", "token": "id",
        "segment": "categorical", "vip": "categorical", "opened": "datetime",
        "born": "datetime", "tags": "ignore", "blob": "ignore", "empty": "ignore",
    }  # fmt: skip
    assert [(i.name, i.role, i.type) for i in inputs_for(roles)] == [
        ("amount", "numeric", "double"), ("paid", "numeric", "double"),
        ("score", "numeric", "double"), ("region", "categorical", "string"),
        ("segment", "categorical", "string"), ("vip", "categorical", "string"),
        ("opened", "datetime", "datetime"), ("born", "datetime", "datetime"),
    ]  # fmt: skip


def test_overrides_win_and_are_checked(table):
    roles = infer_roles(table, {"label"}, {"paid": "categorical", "token": "ignore",
                                           "customer_id": "numeric"})  # fmt: skip
    assert (roles["paid"], roles["token"], roles["customer_id"]) == (
        "categorical", "ignore", "numeric")  # fmt: skip
    with pytest.raises(BadInput, match=r"roles: no column 'nope' \(columns: row, amount"):
        infer_roles(table, set(), {"nope": "numeric"})
    with pytest.raises(BadInput, match=r"roles: 'score': 'number' is not a role \(numeric, "):
        infer_roles(table, set(), {"score": "number"})
    with pytest.raises(BadInput, match=r"'tags' has type list<item: string>, which cannot be "
                                       r"numeric \(it can be: ignore\)"):  # fmt: skip
        infer_roles(table, set(), {"tags": "numeric"})
    with pytest.raises(
        BadInput, match=r"'label' is excluded from the model inputs \(the label, a key"
    ):
        infer_roles(table, {"label"}, {"label": "numeric"})


def test_input_roles_are_checked():
    with pytest.raises(BadInput, match=r"input 'x': role 'id' is not one of numeric, "):
        Input("x", "id")


# ---------------------------------------------------------------- encoders


def test_each_categorical_input_is_encoded_by_its_cardinality(fitted):
    p, X = fitted
    names = p.feature_names_
    assert names[:5] == ["age", "income", "flat", "age__missing", "region=r0"]
    assert [n for n in names if n.startswith("region")] == [f"region=r{i}" for i in range(4)]
    assert ["city__target", "city__frequency"] == [n for n in names if n.startswith("city")]
    zips = [n for n in names if n.startswith("zip")]
    assert zips == [f"zip__hash_{b}" for b in range(pl.HASH_BUCKETS)] + ["zip__frequency"]
    assert [n for n in names if n.startswith("opened")] == [
        f"opened__{part}" for part in DATETIME_PARTS] + ["opened__missing"]  # fmt: skip
    assert X.shape == (N, len(names)) and np.isfinite(X).all()
    assert [s["kind"] for s in p.to_dict()["steps"]] == [
        "numeric", "one_hot", "target", "hashing", "datetime"]  # fmt: skip


def test_without_a_target_medium_cardinality_is_hashed(data):
    columns, inputs, _ = data
    p = Pipeline.fit(columns, inputs[4:5])
    assert p.feature_names_[-1] == "city__frequency" and "city__hash_0" in p.feature_names_


def test_many_categories_with_many_rows_each_are_target_encoded():
    """Past TARGET_MAX categories a column is hashed, unless every category has
    TARGET_ROWS rows on average: then its target encoding is well estimated."""
    rng = np.random.default_rng(3)
    k = pl.TARGET_MAX + 1
    for rows_each, kind in ((pl.TARGET_ROWS, "target"), (pl.TARGET_ROWS // 2, "hashing")):
        n = k * rows_each
        shop = np.array([f"s{i}" for i in np.arange(n) % k], dtype=object)
        y = rng.integers(0, 2, n).astype(float)
        p = Pipeline.fit({"shop": shop}, [Input("shop", "categorical")], y)
        assert [s["kind"] for s in p.to_dict()["steps"]] == [kind], rows_each


def test_numeric_inputs_are_imputed_standardised_and_flagged(fitted, data):
    p, X = fitted
    columns = data[0]
    age = X[:, _at(p, "age")]
    observed = ~np.isnan(columns["age"])
    np.testing.assert_allclose(age.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(age.std(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(age[~observed], 0.0, atol=1e-12)  # imputed at the mean
    np.testing.assert_array_equal(X[:, _at(p, "age__missing")], (~observed).astype(float))
    assert "income__missing" not in p.feature_names_  # no nulls in training: no indicator
    np.testing.assert_array_equal(X[:, _at(p, "flat")], 0.0)  # constant: scale 1, not NaN


def test_target_encoding_for_training_rows_is_cross_fitted():
    """A random id-like column cannot predict the label out of fold; in sample it would."""
    rng = np.random.default_rng(11)
    n = 4000
    columns = {"who": _texts(rng, "w", 800, n)}
    y = (rng.random(n) < 0.5).astype(float)
    p, X = Pipeline.fit_transform(columns, [Input("who", "categorical")], y, seed=5)
    assert p.steps[0].kind == "target"
    out_of_fold = roc_auc(y, X[:, 0])
    in_sample = roc_auc(y, p.transform(columns)[:, 0])
    assert abs(out_of_fold - 0.5) < 0.04, out_of_fold
    assert in_sample > 0.6, in_sample
    # the same seed gives the same folds; another seed others
    again = Pipeline.fit_transform(columns, [Input("who", "categorical")], y, seed=5)[1]
    np.testing.assert_array_equal(X, again)
    other = Pipeline.fit_transform(columns, [Input("who", "categorical")], y, seed=6)[1]
    assert not np.array_equal(X, other)


def test_cross_fitted_encodings_keep_a_real_signal():
    rng = np.random.default_rng(12)
    n = 3000
    who = rng.integers(0, 100, n)
    y = (rng.random(n) < np.where(who % 2 == 0, 0.8, 0.2)).astype(float)
    columns = {"who": np.array([f"g{i}" for i in who], dtype=object)}
    _, X = Pipeline.fit_transform(columns, [Input("who", "categorical")], y, seed=0)
    assert roc_auc(y, X[:, 0]) > 0.75


def test_regression_target_encoding_is_the_smoothed_mean():
    columns = {"g": np.array(["a"] * 10 + ["b"] * 20 + [f"x{i}" for i in range(20)], dtype=object)}
    y = np.concatenate([np.full(10, 5.0), np.full(20, 1.0), np.full(20, 2.0)])
    p = Pipeline.fit(columns, [Input("g", "categorical")], y, task="regression")
    state = p.to_dict()["steps"][0]
    prior = y.mean()
    m = pl.TARGET_SMOOTH
    encodings = dict(zip(state["target"]["categories"], state["target"]["encodings"], strict=True))
    assert state["target"]["prior"] == pytest.approx(prior)
    assert encodings["a"] == pytest.approx((10 * 5.0 + m * prior) / (10 + m))
    assert encodings["b"] == pytest.approx((20 * 1.0 + m * prior) / (20 + m))
    with pytest.raises(BadInput, match="target: a binary task needs labels 0 and 1"):
        Pipeline.fit(columns, [Input("g", "categorical")], y)


# ---------------------------------------------------------------- serving values


def test_unseen_categories_nulls_and_extremes_follow_the_documented_rules(fitted):
    p, _ = fitted
    rows = p.columns_from_records([
        {"age": None, "income": 1e308, "flat": 3, "region": "mars", "city": "atlantis",
         "zip": "", "opened": None},
        {"age": None, "income": -1e308, "flat": None, "region": None, "city": None,
         "zip": None, "opened": "2024-02-29T13:45:00Z"},
    ])  # fmt: skip
    X = p.transform(rows)
    assert np.isfinite(X).all()
    get = {name: X[:, j] for j, name in enumerate(p.feature_names_)}
    np.testing.assert_allclose(get["age"], 0.0, atol=1e-12)
    np.testing.assert_array_equal(get["age__missing"], [1.0, 1.0])
    np.testing.assert_array_equal(get["income"], [pl.CLIP, -pl.CLIP])
    np.testing.assert_array_equal(get["flat"], [0.0, 0.0])
    for j in range(4):
        np.testing.assert_array_equal(get[f"region=r{j}"], [0.0, 0.0])  # one-hot: all zeros
    city = _step(p, "city")
    prior_scaled = (city["target"]["prior"] - city["scaler"]["mean"][0]) / city["scaler"]["scale"][
        0
    ]
    np.testing.assert_allclose(get["city__target"], prior_scaled, rtol=1e-12)
    np.testing.assert_array_equal(get["city__frequency"], [0.0, 0.0])
    np.testing.assert_array_equal(get["zip__frequency"], [0.0, 0.0])
    zip_hashes = np.column_stack([get[f"zip__hash_{b}"] for b in range(pl.HASH_BUCKETS)])
    assert zip_hashes[0].sum() == 1.0 and zip_hashes[1].sum() == 0.0  # "" is a value
    np.testing.assert_array_equal(get["opened__missing"], [1.0, 0.0])


def test_date_parts_of_a_known_timestamp(fitted):
    p, _ = fitted
    rows = p.columns_from_records([{"age": 1, "income": 1, "flat": 1, "region": "r1",
                                    "city": "c1", "zip": "z1", "opened": t} for t in
                                   ("2024-02-29T13:45:00Z", "2024-02-29T17:45:00+04:00",
                                    "2024-02-29T13:45:00")])  # fmt: skip
    X = p.transform(rows)
    np.testing.assert_array_equal(X[0], X[1])
    np.testing.assert_array_equal(X[0], X[2])
    step = _step(p, "opened")
    at = _at(p, "opened__year")
    raw = X[0, at : at + len(DATETIME_PARTS)] * step["scaler"]["scale"] + step["scaler"]["mean"]
    # 2024-02-29 was a Thursday (Monday = 0), the 60th day of the year
    np.testing.assert_allclose(raw, [2024, 2, 29, 3, 13, 60], atol=1e-9)


def test_fast_path_equals_the_kernel_path(fitted, data):
    p, _ = fitted
    columns = {k: v[:64].copy() for k, v in data[0].items()}
    columns["region"][:3] = ["mars", "", None]
    columns["city"][3:6] = ["atlantis", None, "c1"]
    columns["zip"][6:9] = ["zz\u00e9", None, "z\x00"]
    columns["age"][9:12] = [np.inf, -np.inf, 1e308]
    columns["opened"][12:14] = [np.datetime64("NaT"), np.datetime64("1901-12-13T20:45:52")]
    fast = p.transform(columns, fast=True)
    slow = p.transform(columns, fast=False)
    np.testing.assert_array_equal(fast, slow)
    assert np.isfinite(fast).all()


def test_long_free_text_takes_the_object_path_with_the_same_result(fitted, data, monkeypatch):
    p, _ = fitted
    columns = {k: v[:200].copy() for k, v in data[0].items()}
    columns["zip"][:2] = [None, "unseen"]
    columns["city"][:2] = [None, "unseen"]
    want = p.transform(columns, fast=False)
    monkeypatch.setattr(pl, "_TEXT_CHARS", 10)
    assert pl._text(columns["city"])[0].dtype == object
    np.testing.assert_array_equal(p.transform(columns, fast=False), want)


def test_fast_helpers_agree_with_the_kernels():
    texts = ["", "a", "a\x00", "a\x00b", "\u00e9t\u00e9", "x" * 100, "42"]
    want = hash_buckets(np.array(texts, dtype=object), 32, seed=3)
    assert [pl.hash_text(t, 32, 3) for t in texts] == want.tolist()
    rng = np.random.default_rng(2)
    ticks = rng.integers(-(2**61), 2**61, 500)
    ticks = ticks[(ticks > -62_135_596_800 * 10**6) & (ticks < 253_402_300_799 * 10**6)]
    kernel = datetime_parts(ticks.astype("datetime64[us]"), unit="us").tolist()
    assert [list(pl._date_parts(int(t))) for t in ticks] == kernel


def test_far_dates_take_the_kernel_path_on_the_fast_path(fitted, data):
    p, _ = fitted
    columns = {k: v[:2].copy() for k, v in data[0].items()}
    columns["opened"][0] = np.datetime64("20000-01-01T00:00:00", "us")
    np.testing.assert_array_equal(p.transform(columns, fast=True), p.transform(columns, fast=False))


# ---------------------------------------------------------------- JSON


def test_json_round_trip_gives_the_same_matrix(fitted, data):
    p, _ = fitted
    d = json.loads(json.dumps(p.to_dict()))
    assert d["format"] == 1 and d["inputs"][0] == {"name": "age", "role": "numeric"}
    q = Pipeline.from_dict(d)
    assert q.feature_names_ == p.feature_names_ and q.inputs == p.inputs
    columns = data[0]
    np.testing.assert_array_equal(q.transform(columns), p.transform(columns))
    small = {k: v[:5] for k, v in columns.items()}
    np.testing.assert_array_equal(q.transform(small), p.transform(small))
    with pytest.raises(BadInput, match=r"pipeline.json: format 2 is not one this Falaj reads"):
        Pipeline.from_dict(d | {"format": 2})
    with pytest.raises(BadInput, match=r"unknown step kind 'magic'"):
        Pipeline.from_dict(d | {"steps": [{"kind": "magic"}]})
    with pytest.raises(BadInput, match=r"pipeline.json: malformed \(KeyError: 'column'\)"):
        Pipeline.from_dict(d | {"steps": [{"kind": "one_hot"}]})


# ---------------------------------------------------------------- records


@pytest.fixture(scope="module")
def small():
    columns = {"n": np.array([1.0, 2.0, np.nan]), "c": np.array(["a", "3", "true"], dtype=object),
               "t": np.array(["2024-01-01", "2024-06-01", "NaT"], dtype="datetime64[us]")}  # fmt: skip
    inputs = [Input("n", "numeric"), Input("c", "categorical"), Input("t", "datetime")]
    return Pipeline.fit(columns, inputs, np.array([0.0, 1.0, 0.0]))


def test_records_become_columns(small):
    cols = small.columns_from_records([
        {"n": 1, "c": 3, "t": "2024-01-01T00:00:00+02:00", "extra": [1]},
        {"n": 2.5, "c": True, "t": None},
        {"n": None, "c": 3.0, "t": "2024-06-01"},
        {"n": float("nan"), "c": None, "t": "2024-06-01T12:30:00.5Z"},
    ])  # fmt: skip
    np.testing.assert_array_equal(cols["n"], [1.0, 2.5, np.nan, np.nan])
    assert cols["c"].tolist() == ["3", "true", "3", None]
    assert cols["t"].dtype == np.dtype("datetime64[us]")
    assert cols["t"].tolist() == [
        datetime(2023, 12, 31, 22), None, datetime(2024, 6, 1), datetime(2024, 6, 1, 12, 30, 0, 500000),
    ]  # fmt: skip
    X = small.transform(cols)
    assert X.shape == (4, len(small.feature_names_)) and np.isfinite(X).all()
    assert X[0, small.feature_names_.index("c=3")] == 1.0
    assert X[1, small.feature_names_.index("c=true")] == 1.0


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "records: expected a non-empty list of records (JSON objects)"),
        ({"n": 1}, "records: expected a non-empty list of records (JSON objects)"),
        ([{"n": 1, "c": "a", "t": None}, 5], "records[1]: expected an object {input: value}, "
                                             "got a number (5)"),
        ([{"c": "a", "t": None}], "records[0].n: missing (model needs n, c, t)"),
        ([{"n": "1", "c": "a", "t": None}], "records[0].n: expected a number or null, "
                                            "got a string ('1')"),
        ([{"n": True, "c": "a", "t": None}], "records[0].n: expected a number or null, "
                                             "got a boolean"),
        ([{"n": float("inf"), "c": "a", "t": None}], "records[0].n: inf is not a finite number"),
        ([{"n": 1, "c": ["a"], "t": None}], "records[0].c: expected a string, number, boolean "
                                            "or null, got a list"),
        ([{"n": 1, "c": "a", "t": "yesterday"}], "records[0].t: 'yesterday' is not an "
                                                 "ISO-8601 date-time (e.g. 2024-05-01T13:45:00Z)"),
        ([{"n": 1, "c": "a", "t": 1700000000}], "records[0].t: expected an ISO-8601 date-time "
                                                "string or null, got a number (1700000000)"),
    ],
)  # fmt: skip
def test_records_are_checked(small, records, message):
    with pytest.raises(BadInput) as err:
        small.columns_from_records(records)
    assert str(err.value) == message


def test_record_columns_changed_after_parsing_are_checked_again(small):
    records = [{"n": 1, "c": "a", "t": "2024-01-01"}, {"n": None, "c": None, "t": None}]
    cols = small.columns_from_records(records)
    np.testing.assert_array_equal(small.transform(cols), small.transform(dict(cols)))
    cols["n"] = np.array(["x", "y"], dtype=object)
    with pytest.raises(BadInput, match=r"columns: 'n' cannot be a numeric input"):
        small.transform(cols)


def test_errors_name_where(small):
    with pytest.raises(BadInput, match=r"^body.instances\[0\].n: missing"):
        small.columns_from_records([{}], where="body.instances")


# ---------------------------------------------------------------- Arrow and fitting


def test_columns_from_arrow_gives_the_contract_dtypes(table):
    inputs = [Input("paid", "categorical"), Input("vip", "categorical"),
              Input("segment", "categorical"), Input("score", "numeric"),
              Input("vip", "numeric"), Input("opened", "datetime"), Input("born", "datetime")]  # fmt: skip
    cols = {f"{i.name}:{i.role}": columns_from_arrow(table, [i])[i.name] for i in inputs}
    assert cols["paid:categorical"].dtype == object and cols["paid:categorical"][0] in (
        "0",
        "1",
        "2",
    )
    assert set(cols["vip:categorical"]) == {"true", "false"}
    assert set(cols["segment:categorical"]) == {"s0", "s1", "s2"}
    assert cols["score:numeric"].dtype == np.float64
    assert set(cols["vip:numeric"]) == {0.0, 1.0}
    assert cols["opened:datetime"].dtype == np.dtype("datetime64[us]")
    assert cols["opened:datetime"][1] == np.datetime64("1970-01-01T00:00:01")
    assert cols["born:datetime"][1].astype(object) == datetime(1970, 1, 2)
    text = pa.table({"t": ["2024-01-01T00:00:00+01:00", None], "x": [1.5, None]})
    got = columns_from_arrow(text, [Input("t", "datetime"), Input("x", "categorical")])
    assert got["t"].tolist() == [datetime(2023, 12, 31, 23), None]
    assert got["x"].tolist() == ["1.5", None]
    with pytest.raises(BadInput, match=r"table has no column 'nope' \(columns: row, amount"):
        columns_from_arrow(table, [Input("nope", "numeric")])
    with pytest.raises(
        BadInput, match=r"column 'tags': type list<item: string> cannot be a numeric"
    ):
        columns_from_arrow(table, [Input("tags", "numeric")])
    with pytest.raises(BadInput, match=r"column 't' row 0: 'soon' is not an ISO-8601 date-time"):
        columns_from_arrow(pa.table({"t": ["soon"]}), [Input("t", "datetime")])


def test_fitting_checks_its_inputs(data):
    columns, inputs, y = data
    with pytest.raises(BadInput, match=r"input 'gone' has no values in the training rows"):
        Pipeline.fit({"gone": np.full(5, np.nan)}, [Input("gone", "numeric")])
    with pytest.raises(BadInput, match=r"input 'gone' has no values in the training rows"):
        Pipeline.fit({"gone": np.array([None] * 5, dtype=object)}, [Input("gone", "categorical")])
    with pytest.raises(BadInput, match=r"columns: no column 'age' \(the model needs age"):
        Pipeline.fit({}, inputs)
    with pytest.raises(BadInput, match=r"target: expected 1500 values \(one per row\)"):
        Pipeline.fit(columns, inputs, y[:5])
    with pytest.raises(BadInput, match=r"target: 1 values are missing or not finite"):
        Pipeline.fit(columns, inputs, np.where(np.arange(N) == 0, np.nan, y))
    with pytest.raises(BadInput, match=r"task 'ranking' is not one of binary, regression"):
        Pipeline.fit(columns, inputs, y, task="ranking")


def test_fit_transform_equals_transform_but_for_target_encodings(fitted, data):
    p, X = fitted
    again = p.transform(data[0])
    other = [j for j, n in enumerate(p.feature_names_) if n != "city__target"]
    np.testing.assert_array_equal(X[:, other], again[:, other])
    target = _at(p, "city__target")
    assert not np.array_equal(X[:, target], again[:, target])
