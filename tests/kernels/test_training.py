"""Training kernels and estimators: every backend against the reference and scikit-learn."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import linear_model as sk

from kernels.training import LinearRegression, LogisticRegression, Ridge, cpu, cuda, reference

BACKENDS = ["reference", "cpu", "cuda"]
IMPLS = {"reference": reference, "cpu": cpu, "cuda": cuda}


def classification(rng, n, d, constant_col=True):
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d)
    if constant_col:
        X[:, -1] = 2.5
    y = (X @ rng.normal(size=d) + rng.logistic(size=n) > 0).astype(int)
    return X, y


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(1.0, np.max(np.abs(b)))


# -- kernels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_kernels_match_reference(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 4))  # not a multiple of the CPU kernel's block of rows
    y = rng.integers(0, 2, 70).astype(float)
    beta = rng.normal(size=5) * 3
    impl = IMPLS[backend]
    H, g, loss = impl.logistic_terms(X, y, beta)
    H0, g0, loss0 = reference.logistic_terms(X, y, beta)
    np.testing.assert_allclose(H, H0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-12, atol=1e-12)
    assert loss == pytest.approx(loss0, rel=1e-12)
    w, r = rng.random(70), rng.normal(size=70)
    for got, want in zip(
        impl.weighted_gram(X, w, r), reference.weighted_gram(X, w, r), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 300), st.integers(1, 6), st.floats(-50, 50))
def test_cpu_kernel_property(n, d, scale):
    rng = np.random.default_rng(n * 7 + d)
    X = rng.normal(size=(n, d)) * scale
    y = rng.integers(0, 2, n).astype(float)
    beta = rng.normal(size=d + 1)
    H, g, loss = cpu.logistic_terms(X, y, beta)
    H0, g0, loss0 = reference.logistic_terms(X, y, beta)
    tol = 1e-10 * max(1.0, np.abs(H0).max())
    np.testing.assert_allclose(H, H0, atol=tol)
    np.testing.assert_allclose(g, g0, atol=1e-10 * max(1.0, np.abs(g0).max()))
    assert loss == pytest.approx(loss0, rel=1e-10, abs=1e-10)


# -- logistic regression ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("C", [0.05, 1.0, 100.0])
def test_logistic_matches_sklearn(backend, C):
    rng = np.random.default_rng(1)
    X, y = classification(rng, 120, 4)
    ours = LogisticRegression(C=C, backend=backend).fit(X, y)
    theirs = sk.LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    want = np.r_[theirs.coef_[0], theirs.intercept_]
    assert rel_err(np.r_[ours.coef_, ours.intercept_], want) < 1e-4
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X)[:, 1], atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_logistic_accepts_other_dtypes(dtype):
    rng = np.random.default_rng(2)
    X, y = classification(rng, 200, 3)
    X = (X * 10).astype(dtype)
    ours = LogisticRegression(C=0.3, backend="cpu").fit(X, y.astype(bool))
    theirs = sk.LogisticRegression(C=0.3, tol=1e-12, max_iter=10_000).fit(X.astype(float), y)
    assert rel_err(ours.coef_, theirs.coef_[0]) < 1e-4


def test_logistic_separable_and_extreme_scales():
    X = np.array([[-2.0], [-1.0], [1.0], [2.0]]) * 1e6
    y = np.array([0, 0, 1, 1])
    for backend in ("reference", "cpu"):
        m = LogisticRegression(C=1.0, backend=backend).fit(X, y)
        assert np.isfinite(m.coef_).all() and m.predict_proba(X)[-1] > 0.99
    tiny = LogisticRegression(C=1e-8, backend="cpu").fit(X * 1e-12, y)
    assert abs(tiny.coef_[0]) < 1e-6


def test_logistic_one_row_per_class():
    m = LogisticRegression(backend="cpu").fit([[0.0], [1.0]], [0, 1])
    s = sk.LogisticRegression(tol=1e-12).fit([[0.0], [1.0]], [0, 1])
    assert rel_err(np.r_[m.coef_, m.intercept_], np.r_[s.coef_[0], s.intercept_]) < 1e-4


@pytest.mark.parametrize(
    "X,y,msg",
    [
        (np.empty((0, 2)), [], "no rows"),
        ([[0.0], [np.nan]], [0, 1], "NaN or infinity"),
        ([[0.0], [np.inf]], [0, 1], "NaN or infinity"),
        ([[0.0], [1.0]], [0, 2], "only 0 and 1"),
        ([[0.0], [1.0]], [1, 1], "both classes"),
        ([[0.0], [1.0]], [1], "2 rows but y has 1"),
        ([0.0, 1.0], [0, 1], "2-d"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_logistic_errors(X, y, msg, backend):
    with pytest.raises(ValueError, match=msg):
        LogisticRegression(backend=backend).fit(X, y)


def test_logistic_bad_settings():
    with pytest.raises(ValueError, match="C must be positive"):
        LogisticRegression(C=0).fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match="backend='gpu' is not one of"):
        LogisticRegression(backend="gpu").fit([[0.0], [1.0]], [0, 1])


def test_logistic_round_trip_keeps_the_appliance_format():
    rng = np.random.default_rng(3)
    X, y = classification(rng, 80, 3)
    m = LogisticRegression(C=2.0).fit(X, y)
    d = json.loads(json.dumps(m.to_dict()))
    assert set(d) == {"kind", "C", "coef", "intercept"} and d["kind"] == "logistic_regression"
    back = LogisticRegression.from_dict(d)
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    assert m.predict_proba(X).ndim == 1 and m.n_iter_ >= 1


# -- ridge / linear regression ---------------------------------------------------------------


def regression(rng, n, d):
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d) * 5
    return X, X @ rng.normal(size=d) + 3.0 + rng.normal(size=n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("alpha", [0.0, 0.1, 10.0])
def test_ridge_matches_sklearn(backend, alpha):
    rng = np.random.default_rng(4)
    X, y = regression(rng, 90, 5)
    ours = Ridge(alpha=alpha, backend=backend).fit(X, y)
    theirs = (sk.Ridge(alpha=alpha) if alpha else sk.LinearRegression()).fit(X, y)
    assert (
        rel_err(np.r_[ours.coef_, ours.intercept_], np.r_[theirs.coef_, theirs.intercept_]) < 1e-4
    )
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_linear_regression_constant_and_collinear_columns(backend):
    rng = np.random.default_rng(5)
    X, y = regression(rng, 60, 3)
    X = np.column_stack([X, np.full(60, 7.0), X[:, 0] * 2])
    ours = LinearRegression(backend=backend).fit(X, y)
    theirs = sk.LinearRegression().fit(X, y)
    assert (
        rel_err(np.r_[ours.coef_, ours.intercept_], np.r_[theirs.coef_, theirs.intercept_]) < 1e-4
    )


def test_ridge_one_row_and_int_input():
    m = Ridge(alpha=1.0, backend="cpu").fit([[2]], [5])
    assert m.coef_.tolist() == [0.0] and m.intercept_ == 5.0
    X = np.arange(20).reshape(10, 2)
    s = sk.Ridge(alpha=0.5).fit(X, np.arange(10))
    m = Ridge(alpha=0.5, backend="cpu").fit(X.astype(np.int32), np.arange(10))
    assert rel_err(m.coef_, s.coef_) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_ridge_errors(backend):
    with pytest.raises(ValueError, match="Ridge.fit: no rows"):
        Ridge(backend=backend).fit(np.empty((0, 2)), [])
    with pytest.raises(ValueError, match="y contains NaN"):
        Ridge(backend=backend).fit([[1.0]], [np.nan])
    with pytest.raises(ValueError, match="LinearRegression.fit: X contains NaN"):
        LinearRegression(backend=backend).fit([[np.inf]], [1.0])
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        Ridge(alpha=-1, backend=backend).fit([[1.0]], [1.0])


def test_ridge_round_trip():
    rng = np.random.default_rng(6)
    X, y = regression(rng, 30, 2)
    m = Ridge(alpha=0.3).fit(X, y)
    back = Ridge.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    lin = LinearRegression.from_dict(LinearRegression().fit(X, y).to_dict())
    assert lin.alpha == 0.0


@pytest.mark.gpu
def test_cupy_arrays_fit_on_the_gpu():
    from kernels._backend import gpu_available

    if not gpu_available():
        pytest.skip("needs a CUDA GPU with CuPy")
    import cupy

    rng = np.random.default_rng(7)
    X, y = classification(rng, 5000, 6)
    on_gpu = LogisticRegression(C=0.5).fit(cupy.asarray(X), cupy.asarray(y))
    on_cpu = LogisticRegression(C=0.5, backend="cpu").fit(X, y)
    assert rel_err(on_gpu.coef_, on_cpu.coef_) < 1e-8
    p = on_gpu.predict_proba(cupy.asarray(X))
    assert type(p).__module__.startswith("cupy")
    r = Ridge(alpha=1.0).fit(cupy.asarray(X), cupy.asarray(y.astype(float)))
    assert rel_err(r.coef_, Ridge(alpha=1.0, backend="cpu").fit(X, y).coef_) < 1e-8


# -- serial path for small inputs, parallel for large ----------------------------------------


def test_serial_and_parallel_paths_agree(monkeypatch):
    rng = np.random.default_rng(12)
    X, y = classification(rng, 3000, 6, constant_col=False)
    beta = rng.normal(size=7) * 0.3
    w, r = rng.random(3000), rng.normal(size=3000)
    out = {}
    for path, limit in (("serial", 10**12), ("parallel", 0)):
        monkeypatch.setattr(cpu, "SERIAL_BELOW", limit)
        model = LogisticRegression().fit(X, y)
        out[path] = (
            *cpu.logistic_terms(X, y.astype(float), beta),
            *cpu.weighted_gram(X, w, r),
            model.coef_,
            model.predict_proba(X[:5]),
        )
    for a, b in zip(out["serial"], out["parallel"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    H0, g0, _ = reference.logistic_terms(X, y.astype(float), beta)
    np.testing.assert_allclose(out["parallel"][0], H0, rtol=1e-12, atol=1e-12)


def test_small_inputs_predict_without_the_thread_pool():
    # the model server scores 1 to 1,000 rows per request: plain NumPy, the same values up
    # to rounding (BLAS sums the 1-row and the 500-row products in its own orders, which
    # differ between CPUs: 0.853790604108011 vs 0.8537906041080109 on an AMD EPYC)
    rng = np.random.default_rng(13)
    X, y = classification(rng, 500, 8)
    model = LogisticRegression().fit(X, y)
    one = model.predict_proba(X[:1])
    batch = model.predict_proba(X)
    assert one.shape == (1,)
    np.testing.assert_allclose(one[0], batch[0], rtol=1e-12, atol=0)
    assert not np.isclose(one[0], batch[1], rtol=1e-12)  # the right row
    z = X[:1] @ model.coef_ + model.intercept_
    assert one[0] == pytest.approx(1 / (1 + np.exp(-z[0])), rel=1e-14)
