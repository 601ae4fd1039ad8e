"""Model families: each family and task learns a known signal, is reproducible from its
seed, round-trips through its bundle files, and names a bad parameter."""

import json
import subprocess
import sys

import numpy as np
import pytest

import kernels
from appliance.errors import BadInput
from appliance.training import families
from kernels.stats import roc_auc

COMBOS = [(f, t) for f in families.FAMILIES for t in families.TASKS]
# small, fast settings: the signal is easy, the point is the plumbing
FAST = {"gbt": {"n_estimators": 80}, "mlp": {"epochs": 8}, "linear": {}}
REPEAT_TOL = {"linear": 1e-9, "gbt": 1e-9, "mlp": 1e-6}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Two cores shared with other tests: one thread each keeps the fits quick and steady.
    families.set_threads(1)
    kernels.set_device("cpu")
    yield
    families.set_threads(None)
    kernels.set_device(None)


@pytest.fixture(scope="module")
def data():
    """3,000 rows, 8 features: a linear signal plus an interaction; train/valid/test."""
    rng = np.random.default_rng(42)
    X = rng.normal(size=(3000, 8))
    z = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 0.4 * X[:, 3] * X[:, 4]
    y = {
        "binary": (rng.random(3000) < 1 / (1 + np.exp(-2 * z))).astype(np.float64),
        "regression": 3.0 * z + 10.0 + 0.3 * rng.normal(size=3000),
    }
    return X, y


def _split(data, task):
    X, y = data
    y = y[task]
    return (X[:2000], y[:2000]), (X[2000:2500], y[2000:2500]), (X[2500:], y[2500:])


def _fit(family, task, data, seed=7, **params):
    (X, y), (Xv, yv), _ = _split(data, task)
    est = families.get(family)(task, **(FAST[family] | params))
    return est.fit(X, y, seed=seed, X_valid=Xv, y_valid=yv)


def _score(task, y, p):
    if task == "binary":
        return roc_auc(y, p)
    return 1.0 - float(np.mean((y - p) ** 2) / np.var(y))


def _files(est):
    """documents() as a bundle would store them: JSON or text, as bytes."""
    return {
        name: (value if isinstance(value, str) else json.dumps(value)).encode()
        for name, value in est.documents().items()
    }


@pytest.fixture(scope="module")
def fitted(data):
    return {(f, t): _fit(f, t, data) for f, t in COMBOS}


@pytest.mark.parametrize("family,task", COMBOS)
def test_learns_the_signal(fitted, data, family, task):
    est = fitted[family, task]
    _, _, (Xt, yt) = _split(data, task)
    p = est.predict(Xt)
    assert p.shape == (len(yt),) and p.dtype == np.float64
    assert _score(task, yt, p) > 0.8
    if task == "binary":
        assert p.min() >= 0 and p.max() <= 1
    assert est.device_ == "cpu"
    assert est.params_ == families.get(family).defaults(task) | FAST[family]


@pytest.mark.parametrize("family,task", COMBOS)
def test_same_seed_same_predictions(fitted, data, family, task):
    again = _fit(family, task, data)
    X = data[0]
    np.testing.assert_allclose(
        again.predict(X), fitted[family, task].predict(X), rtol=0, atol=REPEAT_TOL[family]
    )


@pytest.mark.parametrize("family,task", COMBOS)
def test_documents_round_trip(fitted, data, family, task):
    est = fitted[family, task]
    files = _files(est)
    doc = json.loads(files["model.json"])
    assert doc["family"] == family and doc["task"] == task and doc["params"] == est.params_
    loaded = families.load(files)
    assert type(loaded) is type(est)
    assert loaded.params_ == est.params_ and loaded.device_ == est.device_
    X = data[0]
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    # the family's own class loads it too; another family's refuses it
    assert families.get(family).from_documents(files).predict(X[:5]).shape == (5,)
    other = next(f for f in families.FAMILIES if f != family)
    with pytest.raises(BadInput, match=f"names family '{family}'"):
        families.get(other).from_documents(files)


def test_gbt_bundle_is_lightgbm_text(fitted):
    est = fitted["gbt", "binary"]
    files = est.documents()
    assert files["model.txt"].startswith("tree\nversion=")
    import lightgbm as lgb

    booster = lgb.Booster(model_str=files["model.txt"])
    assert (
        booster.current_iteration() == est.best_iteration_ == files["model.json"]["best_iteration"]
    )


def test_gbt_early_stopping_and_budget(data):
    (X, y), (Xv, yv), _ = _split(data, "binary")
    gbt = families.get("gbt")
    stopped = gbt("binary", n_estimators=2000, learning_rate=0.3, early_stopping_rounds=10).fit(
        X, y, X_valid=Xv, y_valid=yv
    )
    assert stopped.best_iteration_ < 2000  # the validation loss stopped improving
    half = gbt("binary", n_estimators=40).fit(X, y, budget=0.5)
    assert half.rounds_ == half.best_iteration_ == 20


def test_mlp_numpy_forward_matches_torch(fitted, data):
    import torch

    for task in families.TASKS:
        est = fitted["mlp", task]
        net = est.network(torch)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for m, (w, b) in zip(linears, est.layers_, strict=True):
                m.weight.copy_(torch.from_numpy(w))
                m.bias.copy_(torch.from_numpy(b))
            z = net(torch.as_tensor(data[0], dtype=torch.float32))[:, 0]
        if task == "binary":
            expect = torch.sigmoid(z).numpy()
        else:
            expect = z.numpy() * est.y_std_ + est.y_mean_
        scale = 1.0 if task == "binary" else est.y_std_
        np.testing.assert_allclose(est.predict(data[0]), expect, rtol=0, atol=1e-5 * scale)


def test_mlp_budget_early_stopping_and_stats(data):
    (X, y), (Xv, _), _ = _split(data, "binary")
    mlp = families.get("mlp")
    half = mlp("binary", epochs=8).fit(X, y, budget=0.5)
    assert half.stats_["epochs"] == 4 and half.stats_["rows"] == 2000
    assert half.stats_["rows_per_s"] > 0
    noise = np.random.default_rng(0).integers(0, 2, size=len(Xv)).astype(float)
    stopped = mlp("binary", epochs=200, patience=2, lr=0.01).fit(
        X, y, X_valid=Xv, y_valid=noise
    )  # a validation set it cannot learn: stops after a few epochs
    assert stopped.stats_["epochs"] < 200
    assert stopped.best_epoch_ == stopped.stats_["epochs"] - 2


def test_serving_needs_neither_torch_nor_lightgbm_for_other_families(fitted, tmp_path):
    for family in ("linear", "mlp"):
        (tmp_path / f"{family}.json").write_bytes(_files(fitted[family, "binary"])["model.json"])
    code = f"""
import json, sys, numpy as np
from appliance.training import families
for family in ("linear", "mlp"):
    raw = open({str(tmp_path)!r} + "/" + family + ".json", "rb").read()
    p = families.load({{"model.json": raw}}).predict(np.zeros((2, 8)))
    assert p.shape == (2,), p
assert "torch" not in sys.modules and "lightgbm" not in sys.modules, "imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_device_falls_back_to_the_cpu(data):
    """cuda asked for on a box where the family cannot use it: trained on the CPU."""
    (X, y), _, _ = _split(data, "binary")
    kernels.set_device("cuda")
    try:
        gbt = families.get("gbt")("binary", n_estimators=5).fit(X, y)
        mlp = families.get("mlp")("binary", epochs=1).fit(X, y)
    finally:
        kernels.set_device("cpu")
    import torch

    assert mlp.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    assert gbt.device_ in ("cpu", "cuda")
    assert gbt.predict(X).shape == (2000,)


def test_unknown_family():
    with pytest.raises(BadInput, match="'nope'.*linear, gbt, mlp"):
        families.get("nope")


@pytest.mark.parametrize(
    "family,task,params,match",
    [
        ("linear", "binary", {"C": 0}, "linear: C must be > 0"),
        ("linear", "binary", {"C": "big"}, "linear: C must be a finite number"),
        ("linear", "regression", {"alpha": -1}, "linear: alpha must be >= 0"),
        ("linear", "regression", {"C": 1.0}, "no parameter 'C'.*alpha"),
        ("gbt", "binary", {"num_leaves": 1}, "gbt: num_leaves must be >= 2"),
        ("gbt", "binary", {"num_leaves": 7.5}, "gbt: num_leaves must be an integer"),
        ("gbt", "regression", {"feature_fraction": 1.5}, "gbt: feature_fraction must be"),
        ("gbt", "binary", {"n_estimator": 10}, "no parameter 'n_estimator'"),
        ("mlp", "binary", {"hidden": [64, 0]}, "mlp: hidden must be"),
        ("mlp", "regression", {"lr": float("nan")}, "mlp: lr must be a finite number"),
        ("mlp", "binary", {"batch_size": True}, "mlp: batch_size must be an integer"),
    ],
)
def test_bad_params_name_the_param(data, family, task, params, match):
    (X, y), _, _ = _split(data, task)
    with pytest.raises(BadInput, match=match):
        families.get(family)(task, **params).fit(X[:50], y[:50])


def test_bad_data_and_task(data):
    X, y = data[0][:50], data[1]["binary"][:50]
    linear = families.get("linear")
    with pytest.raises(BadInput, match="only 0 and 1"):
        linear("binary").fit(X, y * 2)
    with pytest.raises(BadInput, match="X has 50 rows but y 49"):
        linear("binary").fit(X, y[:49])
    with pytest.raises(BadInput, match="X contains NaN"):
        linear("binary").fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(BadInput, match="task must be one of binary, regression"):
        linear("multiclass").fit(X, y)
    with pytest.raises(BadInput, match="budget must be in"):
        linear("binary").fit(X, y, budget=0)
    with pytest.raises(BadInput, match="seed must be an integer"):
        linear("binary").fit(X, y, seed=2**40)
    fitted = linear("binary").fit(X, y)
    with pytest.raises(BadInput, match="X has 3 features, the model 8"):
        fitted.predict(X[:, :3])


def test_unreadable_bundles(fitted):
    files = _files(fitted["mlp", "binary"])
    with pytest.raises(BadInput, match="the model bundle has no model.json"):
        families.load({})
    doc = json.loads(files["model.json"])
    doc["layers"][0]["weight"] = doc["layers"][0]["weight"][:-8]
    with pytest.raises(BadInput, match="layer 0 weight holds"):
        families.load({"model.json": json.dumps(doc)})
    del doc["task"]
    with pytest.raises(BadInput, match="mlp model.json is not readable.*task"):
        families.load({"model.json": json.dumps(doc)})
    gbt = _files(fitted["gbt", "binary"])
    with pytest.raises(BadInput, match="no model.txt"):
        families.load({"model.json": gbt["model.json"]})


def test_spaces_and_defaults_check():
    for family in families.FAMILIES:
        klass = families.get(family)
        for task in families.TASKS:
            space = klass.space(task)
            assert space, (family, task)
            for spec in space.values():
                ((kind, bounds),) = spec.items()
                assert kind in ("int", "uniform", "log_uniform", "choice")
            # every default, and every end of a search range, is a valid value
            assert klass(task).checked_params() == klass.defaults(task)
            for name, spec in space.items():
                ((kind, bounds),) = spec.items()
                for value in bounds:
                    klass(task, **{name: value}).checked_params()
    assert families.get("linear").space("binary") == {"C": {"log_uniform": [0.01, 100.0]}}
    assert families.get("mlp")("binary", hidden="128, 64").checked_params()["hidden"] == [128, 64]


@pytest.mark.gpu
def test_gbt_on_the_gpu(data):
    """On a box with a GPU (and an OpenCL driver), gbt trains there and learns the same."""
    from kernels._backend import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA GPU")
    (X, y), _, (Xt, yt) = _split(data, "binary")
    kernels.set_device("cuda")
    try:
        est = families.get("gbt")("binary", n_estimators=120).fit(X, y)
    finally:
        kernels.set_device("cpu")
    assert est.device_ == "cuda"
    assert roc_auc(yt, est.predict(Xt)) > 0.8
