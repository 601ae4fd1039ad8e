"""Scalers, clipping, bucketing and imputation: against scikit-learn and NumPy, per backend."""

import json

import numpy as np
import pytest
import sklearn.impute
import sklearn.preprocessing

from kernels._backend import DeviceUnavailable
from kernels.summary import ColumnSummary
from kernels.transforms import (
    MinMaxScaler,
    QuantileBucketizer,
    QuantileClipper,
    RobustScaler,
    SimpleImputer,
    StandardScaler,
    log1p,
)

BACKENDS = ["reference", "cpu", "cuda"]


def data(n=25, d=3, seed=0, nan_every=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[0.0, 1e9, -3.0][:d], scale=[1.0, 1.0, 1e-3][:d], size=(n, d))
    X[::nan_every, min(1, d - 1)] = np.nan
    return X


def close(a, b, rtol=1e-12, atol=0.0):
    np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("backend", BACKENDS)
def test_standard_scaler_matches_sklearn(backend):
    X = data()
    ours = StandardScaler(backend=backend).fit(X)
    theirs = sklearn.preprocessing.StandardScaler().fit(X)
    close(ours.mean_, theirs.mean_, rtol=1e-14)
    close(ours.scale_, theirs.scale_, rtol=1e-9)  # the 1e9 column: two-pass vs Welford
    close(ours.transform(X), theirs.transform(X), rtol=1e-9, atol=1e-12)
    assert ours.n_samples_seen_ == len(X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_robust_scaler_matches_sklearn(backend):
    X = data(n=30)
    ours = RobustScaler(backend=backend).fit(X)
    theirs = sklearn.preprocessing.RobustScaler().fit(X)
    close(ours.center_, theirs.center_, rtol=1e-14)
    close(ours.scale_, theirs.scale_, rtol=1e-9)
    close(ours.transform(X), theirs.transform(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_max_scaler_matches_sklearn(backend):
    X = data()
    ours = MinMaxScaler(backend=backend).fit(X)
    theirs = sklearn.preprocessing.MinMaxScaler().fit(X)
    close(ours.data_min_, theirs.data_min_, rtol=0)
    close(ours.data_max_, theirs.data_max_, rtol=0)
    out = ours.transform(X)
    lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    close(out, (X - lo) / (hi - lo), rtol=1e-15)
    # scikit-learn computes X * (1 / range) - min / range, which cancels on the 1e9 column.
    close(out, theirs.transform(X), atol=1e-6)
    assert np.nanmin(out, axis=0).tolist() == [0.0] * 3  # exact at the fitted ends
    assert np.nanmax(out, axis=0).tolist() == [1.0] * 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", ["mean", "median", "constant"])
def test_simple_imputer_matches_sklearn(backend, strategy):
    X = data(nan_every=4)
    X[2, 0] = np.nan
    ours = SimpleImputer(strategy, fill_value=-1.5, add_indicator=True, backend=backend).fit(X)
    theirs = sklearn.impute.SimpleImputer(
        strategy=strategy, fill_value=-1.5, add_indicator=True
    ).fit(X)
    close(ours.statistics_, theirs.statistics_.astype(np.float64), rtol=1e-14)
    got = ours.transform(X)
    close(got, theirs.transform(X), rtol=1e-14)
    assert got.shape == (len(X), 5)  # two columns had NaN: two indicators


# ---------------------------------------------------------------- NaN, inf, dtypes, shapes


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_is_ignored_in_fit_and_kept_in_transform(backend):
    X = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])
    for est in (StandardScaler, MinMaxScaler, RobustScaler):
        out = est(backend=backend).fit(X).transform(X)
        assert np.isnan(out[2, 0]) and np.isnan(out[0, 1])
        close(out[:2, 0], [-1.0, 1.0] if est is StandardScaler else out[:2, 0])
    close(StandardScaler(backend=backend).fit(X).mean_, [2.0, 3.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("est", [StandardScaler, MinMaxScaler, RobustScaler, QuantileClipper])
def test_fit_rejects_what_has_no_state(backend, est):
    with pytest.raises(ValueError, match="no rows"):
        est(backend=backend).fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="infinity in column 1"):
        est(backend=backend).fit(np.array([[0.0, 1.0], [1.0, -np.inf]]))
    with pytest.raises(ValueError, match="column 0 has no observed"):
        est(backend=backend).fit(np.array([[np.nan, 1.0], [np.nan, 2.0]]))
    with pytest.raises(ValueError, match="must be numeric"):
        est(backend=backend).fit(np.array([["a"], ["b"]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_transform_of_no_rows_and_wrong_width(backend):
    scaler = StandardScaler(backend=backend).fit(data())
    assert scaler.transform(np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match="X has 2 columns, but it was fitted on 3"):
        scaler.transform(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler(backend=backend).transform(data())


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_row_and_constant_columns_transform_to_zero(backend):
    one = np.array([[5.0, -2.0]])
    for est in (StandardScaler, MinMaxScaler, RobustScaler):
        close(est(backend=backend).fit(one).transform(one), np.zeros((1, 2)), rtol=0)
    const = np.full((7, 2), 0.1)  # 0.1 * 7 / 7 != 0.1 in floats: must still be constant
    close(StandardScaler(backend=backend).fit(const).scale_, [1.0, 1.0], rtol=0)
    close(StandardScaler(backend=backend).fit(const).transform(const), np.zeros((7, 2)), atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64, np.uint8, bool])
def test_any_numeric_dtype_gives_float64_results(backend, dtype):
    X = (np.arange(24).reshape(8, 3) % 5).astype(dtype)
    want = StandardScaler(backend="reference").fit(X.astype(np.float64))
    got = StandardScaler(backend=backend).fit(X)
    out = got.transform(X)
    assert out.dtype == np.float64
    close(out, want.transform(X.astype(np.float64)), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_overflow_is_a_clear_error(backend):
    X = np.array([[1e200], [-1e200], [3e200]])  # the variance overflows float64
    with pytest.raises(ValueError, match="overflows float64"):
        StandardScaler(backend=backend).fit(X)
    with pytest.raises(ValueError, match="range max - min overflows"):
        MinMaxScaler(backend=backend).fit(np.array([[1.7e308], [-1.7e308]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_and_tiny_values_scale(backend):
    X = np.array([[1e150, 1e-300], [-1e150, -1e-300], [3e150, 5e-324]])
    want = sklearn.preprocessing.StandardScaler().fit_transform(X)
    close(StandardScaler(backend=backend).fit(X).transform(X), want, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transform_of_inf_and_nan(backend):
    scaler = StandardScaler(backend=backend).fit(np.array([[0.0], [2.0]]))
    out = scaler.transform(np.array([[np.inf], [-np.inf], [np.nan]]))
    assert out[:, 0].tolist()[:2] == [np.inf, -np.inf] and np.isnan(out[2, 0])
    clipper = QuantileClipper(0.0, 1.0, backend=backend).fit(np.array([[0.0], [2.0]]))
    out = clipper.transform(np.array([[np.inf], [-np.inf], [np.nan], [1.0]]))
    close(out[:, 0], [2.0, 0.0, np.nan, 1.0], rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log1p(backend):
    X = np.array([[0, 1, 9], [-1, 3, 99]], dtype=np.int64)
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf, as intended
        expected = np.log1p(X.astype(np.float64))
    close(log1p(X, backend=backend), expected, rtol=1e-15)
    assert log1p(np.zeros(0), backend=backend).shape == (0, 1)


# ---------------------------------------------------------------- quantile clipping and buckets


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantile_clipper_matches_numpy(backend):
    X = data(n=40)
    clipper = QuantileClipper(0.1, 0.9, backend=backend).fit(X)
    lo, hi = np.nanquantile(X, [0.1, 0.9], axis=0)
    close(clipper.lower_, lo, rtol=1e-14)
    close(clipper.upper_, hi, rtol=1e-14)
    close(clipper.transform(X), np.clip(X, clipper.lower_, clipper.upper_), rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantile_bucketizer(backend):
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=40), (np.arange(40) % 10 == 0).astype(float)])
    X[3, 0] = np.nan
    b = QuantileBucketizer(n_bins=4, backend=backend).fit(X)
    close(b.edges_[0], np.nanquantile(X[:, 0], [0.25, 0.5, 0.75]), rtol=1e-14)
    assert b.n_bins_.tolist() == [4, 2]  # 90% zeros: the three edges tie at 0 and merge
    out = b.transform(X)
    assert out.dtype == np.int64 and out[3, 0] == -1
    kept = ~np.isnan(X[:, 0])
    want0 = np.searchsorted(np.nanquantile(X[:, 0], [0.25, 0.5, 0.75]), X[kept, 0], side="right")
    assert out[kept, 0].tolist() == want0.tolist()
    assert sorted(np.bincount(out[kept, 0]).tolist()) == [9, 10, 10, 10]  # 39 distinct values
    want = np.searchsorted(b.edges_[1], X[:, 1], side="right")
    assert out[:, 1].tolist() == want.tolist()
    with pytest.raises(ValueError, match="n_bins must be an int >= 1"):
        QuantileBucketizer(n_bins=0).fit(X)


# ---------------------------------------------------------------- partitions and state


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_fit_on_whole_equals_merge_of_partition_fits(backend):
    X = data(n=30)
    parts = [X[:7], X[7:19], X[19:]]
    merged = ColumnSummary.from_array(parts[0], backend=backend)
    for part in parts[1:]:
        merged = merged.merge(ColumnSummary.from_array(part, backend=backend))
    whole = StandardScaler(backend=backend).fit(X)
    pieces = StandardScaler.from_summary(merged)
    close(pieces.mean_, whole.mean_, rtol=1e-14)
    # The 1e9-offset column's means carry ~1e-7 absolute rounding into Chan's merge term.
    close(pieces.scale_, whole.scale_, rtol=1e-7)
    assert pieces.n_samples_seen_ == whole.n_samples_seen_ == 30
    mm = MinMaxScaler.from_summary(merged)
    close(mm.data_min_, MinMaxScaler(backend=backend).fit(X).data_min_, rtol=0)
    imp = SimpleImputer.from_summary(merged, add_indicator=True)
    close(imp.transform(X), SimpleImputer(add_indicator=True).fit(X).transform(X), rtol=1e-14)


@pytest.mark.parametrize(
    "est",
    [
        StandardScaler(),
        MinMaxScaler(),
        RobustScaler(),
        QuantileClipper(0.05, 0.95),
        QuantileBucketizer(3),
        SimpleImputer("median", add_indicator=True),
    ],
    ids=lambda e: type(e).__name__,
)
def test_state_round_trips_through_strict_json(est):
    X = data()
    est.fit(X)
    d = json.loads(json.dumps(est.to_dict(), allow_nan=False))
    again = type(est).from_dict(d)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))


def test_standard_scaler_reads_the_original_state_format():
    d = {"kind": "standard_scaler", "n_samples_seen": 3, "mean": [1.0, 2.0], "scale": [2.0, 4.0]}
    scaler = StandardScaler.from_dict(d)
    close(scaler.transform([[3.0, 10.0]]), [[1.0, 2.0]], rtol=0)
    assert scaler.to_dict() == d


# ---------------------------------------------------------------- dispatch


def test_numpy_input_runs_on_cpu_and_cuda_demand_without_gpu_is_an_error(monkeypatch, no_gpu):
    from kernels._backend import SMALL_WORK, select

    monkeypatch.setenv("FALAJ_DEVICE", "auto")

    def chosen(X):
        return select("transforms", X, numpy_when_small=True).__name__

    assert chosen(np.zeros(SMALL_WORK)) == "kernels.transforms.cpu"
    assert chosen(np.zeros(2)) == "kernels.transforms.reference"
    monkeypatch.setenv("FALAJ_DEVICE", "cuda")
    with pytest.raises(DeviceUnavailable):
        StandardScaler().fit(data())
    with pytest.raises(ValueError, match="backend='tpu' is not one of"):
        StandardScaler(backend="tpu").fit(data())
