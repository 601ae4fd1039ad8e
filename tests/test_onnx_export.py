"""ONNX export: the whole fitted pipeline and the estimator, taking raw columns, checked
against native predictions with onnxruntime on hold-out-like rows with nulls and unseen
categories."""

import hashlib

import numpy as np
import onnx
import pyarrow as pa
import pytest

ort = pytest.importorskip("onnxruntime")

from appliance.core import Appliance  # noqa: E402
from appliance.errors import BadInput  # noqa: E402
from appliance.registry import onnx_export  # noqa: E402
from appliance.registry.model import Model  # noqa: E402
from appliance.training import families  # noqa: E402
from appliance.training.pipeline import Input, Pipeline, columns_from_arrow  # noqa: E402
from kernels.transforms import datetime_parts  # noqa: E402
from tests.conftest import ACTOR, Falaj  # noqa: E402

ROWS, HOLDOUT = 1000, 800  # rows from HOLDOUT on are the latest: the time split's hold-out
FEATURES = ("age", "income", "region", "city", "opened")
GBT = {"n_estimators": 60}


def _with_nulls(rng, values, share):
    return [None if rng.random() < share else v for v in values]


def _table(seed=0):
    """Numeric columns with nulls, a low-cardinality (one-hot) and a medium-cardinality
    (target + frequency) categorical column, a datetime, a binary and a numeric label."""
    rng = np.random.default_rng(seed)
    age, income = rng.normal(45, 12, ROWS), rng.lognormal(10, 0.5, ROWS)
    region = rng.choice(["north", "south", "east", "west", "centre"], ROWS)
    city = np.array([f"city{i:02d}" for i in rng.integers(0, 40, ROWS)])
    opened = np.datetime64("1965-01-01", "us") + (
        rng.integers(0, 60 * 365 * 86400, ROWS) * 1_000_000
    ).astype("timedelta64[us]")
    z = ((age - 45) / 12 + (region == "north") - 0.5 * (region == "east")
         + 0.6 * np.array([int(c[4:]) % 3 for c in city]) - 0.6)  # fmt: skip
    minutes = np.arange(ROWS).astype("timedelta64[m]")
    return pa.table({
        "customer_id": [f"c{i}" for i in range(ROWS)],
        "event_time": pa.array(np.datetime64("2024-01-01", "us") + minutes),
        "age": _with_nulls(rng, age.tolist(), 0.1),
        "income": _with_nulls(rng, income.tolist(), 0.1),
        "region": _with_nulls(rng, region.tolist(), 0.08),
        "city": _with_nulls(rng, city.tolist(), 0.05),
        "opened": pa.array(_with_nulls(rng, opened.tolist(), 0.1), pa.timestamp("us")),
            "default": (rng.random(ROWS) < 1 / (1 + np.exp(-z))).astype(int),
        "amount": (100 * z + rng.normal(0, 20, ROWS)).tolist(),
    })  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An appliance with models risk_linear@1, risk_gbt@1, amount_gbt@1 (regression) and
    hashed@1 (a hashed column, from a table of its own) trained through it."""
    home = tmp_path_factory.mktemp("onnx") / "home"
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    table = _table()
    app.ingestion.ingest(table, "acct", "customer_id", "event_time", ACTOR)
    app.training.train("acct", "default", "risk_linear", ACTOR, features=FEATURES)
    app.training.train("acct", "default", "risk_gbt", ACTOR, family="gbt", features=FEATURES,
                       params=GBT)  # fmt: skip
    app.training.train("acct", "amount", "amount_gbt", ACTOR, family="gbt", features=FEATURES,
                       params=GBT, task="regression")  # fmt: skip
    # more distinct values than target encoding takes: hashed
    rng, keys = np.random.default_rng(2), [f"z{i}" for i in range(1400)]
    zips = pa.table({"customer_id": keys, "zip": keys, "x": rng.normal(size=1400),
                     "event_time": pa.array(np.arange(1400) * 60_000_000, pa.timestamp("us")),
                     "default": rng.integers(0, 2, 1400)})  # fmt: skip
    app.ingestion.ingest(zips, "zips", "customer_id", "event_time", ACTOR)
    app.training.train("zips", "default", "hashed", ACTOR, features=("x", "zip"),
                       roles={"zip": "categorical"})  # fmt: skip
    yield app, home, table
    app.close()


def holdout_like(table, inputs):
    """The hold-out rows, with unseen categories, injected nulls and ±inf, and a row of
    nothing but missing values."""
    cols = columns_from_arrow(table.slice(HOLDOUT), inputs)
    cols = {k: v.copy() for k, v in cols.items()}
    n = len(next(iter(cols.values())))
    assert n == ROWS - HOLDOUT
    roles = {i.name: i.role for i in inputs}
    for j, (name, role) in enumerate(roles.items()):
        rows = slice(10 * j, 10 * j + 10)
        if role == "categorical":
            cols[name][rows] = "never-seen"
            cols[name][rows.start + 100 : rows.stop + 100] = None
        elif role == "numeric":
            cols[name][rows] = np.nan
            cols[name][rows.start + 100] = np.inf  # ±inf is missing, as in serving
            cols[name][rows.start + 101] = -np.inf
        else:
            cols[name][rows] = np.datetime64("NaT")
    for name, role in roles.items():  # the last row: every input missing
        cols[name][-1] = {"numeric": np.nan, "categorical": None}.get(role, np.datetime64("NaT"))
    return cols


def feeds(inputs, columns):
    """onnxruntime inputs by the export's conventions: [N, 1]; None -> ""; datetime as
    int64 epoch microseconds, NaT as INT64_MIN."""
    out = {}
    for i in inputs:
        v = columns[i.name]
        if i.role == "categorical":
            v = np.array(["" if s is None else s for s in v], dtype=object)
        elif i.role == "datetime":
            v = v.astype("datetime64[us]").view(np.int64)
        out[i.name] = v.reshape(-1, 1)
    return out


def run_onnx(path, inputs, columns):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, feeds(inputs, columns))
    return got


# Linear models run in double; trees in float32 (ONNX's TreeEnsemble): probabilities to
# 1e-4, regression values to 1e-6 of their largest magnitude (float32 has ~7 digits).
@pytest.mark.parametrize(
    "name,output,tolerance",
    [("risk_linear", "probability", 1e-6), ("risk_gbt", "probability", 1e-4),
     ("amount_gbt", "prediction", 1e-6)],
)  # fmt: skip
def test_export_matches_native_predictions(trained, tmp_path, name, output, tolerance):
    app, _, table = trained
    model = app.registry.load(name, 1)
    out = tmp_path / f"{name}.onnx"
    r = app.registry.export(name, 1, out, ACTOR)
    data = out.read_bytes()
    assert r["path"] == str(out) and r["bytes"] == len(data)
    assert r["sha256"] == hashlib.sha256(data).hexdigest()
    assert r["inputs"] == list(FEATURES) and r["output"] == output
    assert r["opset"]["ai.onnx"] == onnx_export.OPSET

    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    types = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert types == {"age": onnx.TensorProto.DOUBLE, "income": onnx.TensorProto.DOUBLE,
                     "region": onnx.TensorProto.STRING, "city": onnx.TensorProto.STRING,
                     "opened": onnx.TensorProto.INT64}  # fmt: skip
    assert [o.name for o in proto.graph.output] == [output]
    kinds = [s.kind for s in model.pipeline.steps]
    assert kinds == ["numeric", "one_hot", "target", "datetime"]  # every step is exercised

    cols = holdout_like(table, model.inputs)
    got = run_onnx(out, model.inputs, cols)
    want = model.predict_columns(cols)
    assert got.shape == want.shape == (ROWS - HOLDOUT,) and got.dtype == np.float64
    scale = max(1.0, float(np.abs(want).max())) if output == "prediction" else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance * scale)
    assert np.ptp(want) > 0.1 * scale  # the rows differ: the comparison means something


def test_linear_regression_and_empty_string_convention(trained, tmp_path):
    """Ridge (built directly: same classes as training), and "" at the ONNX input scores
    as a null does natively."""
    _, _, table = trained
    inputs = [Input(n, r) for n, r in zip(FEATURES, ["numeric"] * 2 + ["categorical"] * 2
                                          + ["datetime"], strict=True)]  # fmt: skip
    cols = columns_from_arrow(table.slice(0, HOLDOUT), inputs)
    y = np.asarray(table["amount"][:HOLDOUT])
    pipeline, X = Pipeline.fit_transform(cols, inputs, y, "regression")
    ridge = families.get("linear")(task="regression", alpha=1.0).fit(X, y)
    model = Model("amount_linear", 1, pipeline, ridge, task="regression")
    r = onnx_export.export(model, tmp_path / "ridge.onnx")
    assert r["output"] == "prediction"
    test = holdout_like(table, inputs)
    got = run_onnx(tmp_path / "ridge.onnx", inputs, test)
    np.testing.assert_allclose(got, model.predict_columns(test), rtol=1e-9, atol=1e-6)
    nothing = model.predict_records([dict.fromkeys(FEATURES)])[0]
    assert got[-1] == pytest.approx(nothing, abs=1e-9)


def test_date_parts_match_the_kernels_across_calendars():
    """The civil-from-days arithmetic against the kernels' parts: leap days, century
    years, before 1970 (negative epochs), far past and future, the last microsecond."""
    edges = ["1600-02-29T23:59:59.999999", "1700-03-01", "1900-02-28T12:00", "1900-03-01",
             "1969-12-31T23:59:59.999999", "1970-01-01", "2000-02-29T05:00", "2000-12-31T23:00",
             "2100-03-01", "-0001-12-31", "9999-12-31T23:59:59"]  # fmt: skip
    rng = np.random.default_rng(5)
    days = rng.integers(-100_000_000, 100_000_000, 2000)  # ±270,000 years
    rand = days * 86_400_000_000 + rng.integers(0, 86_400_000_000, 2000)
    us = np.concatenate([np.array(edges, dtype="datetime64[us]").view(np.int64), rand])
    g = onnx_export._Graph({"t"})
    parts = onnx_export._date_parts(g, "t")
    g.op("Identity", parts, out="parts")
    int64 = onnx.TensorProto.INT64
    graph = onnx.helper.make_graph(
        g.nodes, "parts", [onnx.helper.make_tensor_value_info("t", int64, [None, 1])],
        [onnx.helper.make_tensor_value_info("parts", int64, [None, 6])], g.inits,
    )  # fmt: skip
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"t": us.reshape(-1, 1)})
    np.testing.assert_array_equal(got, datetime_parts(us, unit="us"))


def test_cli_export_writes_a_file_that_loads_and_is_audited(trained, tmp_path):
    app, home, _ = trained
    out = tmp_path / "risk.onnx"
    r = Falaj(home).ok("models", "export", "models:/risk_gbt/1", "--format", "onnx",
                       "--out", out)  # fmt: skip
    assert f"wrote {out}" in r.output and "inputs: age, income, region, city, opened" in r.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(FEATURES)
    assert [o.name for o in session.get_outputs()] == ["probability"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    events = [e for e in app.audit.tail(20, ACTOR) if e["action"] == "model.export"]
    assert events[0]["subject"] == "risk_gbt@1"
    assert events[0]["details"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert events[0]["details"]["format"] == "onnx"


def test_hashed_columns_are_refused_with_nothing_written_or_audited(trained, tmp_path):
    app, _, _ = trained
    out = tmp_path / "hashed.onnx"
    with pytest.raises(BadInput, match=r"hashed@1: input 'zip' .* is hashed; ONNX cannot hash"):
        app.registry.export("hashed", 1, out, ACTOR)
    assert not out.exists()
    assert not [e for e in app.audit.tail(50, ACTOR) if e["subject"] == "hashed@1"
                and e["action"] == "model.export"]  # fmt: skip


def _small_model(values):
    rng = np.random.default_rng(1)
    cols = {"x": rng.normal(size=len(values)), "c": np.array(values, dtype=object)}
    y = (rng.random(len(values)) < 0.5).astype(float)
    inputs = [Input("x", "numeric"), Input("c", "categorical")]
    pipeline, X = Pipeline.fit_transform(cols, inputs, y)
    estimator = families.get("linear")().fit(X, y, seed=0)
    return Model("small", 2, pipeline, estimator)


def test_mlp_is_refused(tmp_path):
    # refused by family before any fitted state is read, so an unfitted MLP will do (and
    # spares this file PyTorch's import)
    model = _small_model(["a", "b"] * 20)
    model.estimator = families.get("mlp")(task="binary")
    with pytest.raises(BadInput, match="cannot export a mlp model to ONNX; export covers "
                                       "linear and tree models"):  # fmt: skip
        onnx_export.export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_empty_string_category_and_bad_paths_are_refused(tmp_path):
    with pytest.raises(BadInput, match=r"input 'c' has the empty string as a category"):
        onnx_export.export(_small_model(["a", ""] * 20), tmp_path / "m.onnx")
    model = _small_model(["a", "b", None] * 20)
    with pytest.raises(BadInput, match="does not exist"):
        onnx_export.export(model, tmp_path / "no" / "m.onnx")
    with pytest.raises(BadInput, match="is a folder"):
        onnx_export.export(model, tmp_path)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    r = onnx_export.export(model, out)  # replaces the old file whole
    assert out.read_bytes()[:3] != b"old" and out.stat().st_size == r["bytes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
