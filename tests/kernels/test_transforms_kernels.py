"""Every kernel of the Numba CPU and CUDA (simulator) backends against the NumPy reference.

Inputs are the shapes the estimators hand the kernels: C-contiguous float64 / int64. The
CUDA simulator is slow, so arrays stay at tens of rows.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kernels.transforms import cpu, cuda, reference

ACCELERATED = [pytest.param(cpu, id="cpu"), pytest.param(cuda, id="cuda")]
FEW = settings(max_examples=12, deadline=None)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
any_float = st.one_of(
    finite,
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 1e-300, 5e-324]),
)


def matrices(elements=any_float, max_rows=24, max_cols=3):
    shape = st.tuples(st.integers(0, max_rows), st.integers(1, max_cols))
    return hnp.arrays(np.float64, shape, elements=elements)


def edge_matrices(with_inf=True):
    """Named edge cases: empty, one row, NaN, ±inf, constant, huge and tiny columns."""
    rng = np.random.default_rng(7)
    cases = {
        "empty": np.zeros((0, 3)),
        "one_row": np.array([[1.5, -2.0, 0.0]]),
        "nan": np.array([[np.nan, 1.0], [2.0, np.nan], [3.0, np.nan]]),
        "all_nan_column": np.array([[np.nan, 1.0], [np.nan, 2.0]]),
        "constant": np.full((9, 2), 0.1),
        "huge": rng.normal(size=(11, 2)) * 1e300,
        "tiny": rng.normal(size=(11, 2)) * 1e-300,
        "offset": 1e9 + rng.normal(size=(17, 2)),
        "random": rng.normal(size=(23, 3)),
    }
    if with_inf:
        cases["inf"] = np.array([[np.inf, 1.0], [-np.inf, 2.0], [0.0, np.inf]])
    return cases


def same(actual, expected, rtol=1e-12, atol=0.0):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def same_summary(got, want, X):
    count, nans, total, m2, lo, hi = want
    g_count, g_nans, g_total, g_m2, g_lo, g_hi = (np.asarray(p) for p in got)
    np.testing.assert_array_equal(g_count, count)
    np.testing.assert_array_equal(g_nans, nans)
    np.testing.assert_array_equal(g_lo, lo)
    np.testing.assert_array_equal(g_hi, hi)
    # Summation order differs between backends: allow rounding relative to the magnitudes.
    big = float(np.nanmax(np.abs(X), initial=0.0)) * max(len(X), 1)
    np.testing.assert_allclose(g_total, total, rtol=1e-12, atol=1e-13 * big, equal_nan=True)
    np.testing.assert_allclose(g_m2, m2, rtol=1e-9, atol=1e-13 * big * big, equal_nan=True)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # simulator threads do IEEE maths
        yield


# ---------------------------------------------------------------- numeric columns


@pytest.mark.parametrize("backend", ACCELERATED)
@pytest.mark.parametrize("case", list(edge_matrices()))
def test_column_summary_edge_cases(backend, case):
    X = edge_matrices()[case]
    want = reference.column_summary(X)
    got = backend.column_summary(X)
    if case in ("huge", "inf"):  # overflowing sums: only their being non-finite is defined
        np.testing.assert_array_equal(np.asarray(got[0]), want[0])
        np.testing.assert_array_equal(np.asarray(got[4]), want[4])
        np.testing.assert_array_equal(np.asarray(got[5]), want[5])
        return
    same_summary(got, want, X)


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(X=matrices(st.one_of(finite, st.just(np.nan))))
def test_column_summary_random(backend, X):
    same_summary(backend.column_summary(X), reference.column_summary(X), X)


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(X=matrices(), data=st.data())
def test_elementwise_random(backend, X, data):
    d = X.shape[1]
    shift = data.draw(hnp.arrays(np.float64, d, elements=finite))
    scale = data.draw(hnp.arrays(np.float64, d, elements=st.floats(1e-3, 1e3)))
    lo = data.draw(hnp.arrays(np.float64, d, elements=finite))
    hi = lo + data.draw(hnp.arrays(np.float64, d, elements=st.floats(0, 1e3)))
    same(backend.center_scale(X, shift, scale), reference.center_scale(X, shift, scale))
    same(backend.log1p(X), reference.log1p(X), rtol=1e-15)
    same(backend.clip(X, lo, hi), reference.clip(X, lo, hi), rtol=0)


@pytest.mark.parametrize("backend", ACCELERATED)
@pytest.mark.parametrize("case", list(edge_matrices()))
def test_elementwise_edge_cases(backend, case):
    X = edge_matrices()[case]
    d = X.shape[1]
    shift, scale = np.full(d, 0.5), np.full(d, 3.0)
    lo, hi = np.full(d, -1.0), np.full(d, 1.0)
    same(backend.center_scale(X, shift, scale), reference.center_scale(X, shift, scale))
    same(backend.log1p(X), reference.log1p(X), rtol=1e-15)
    same(backend.clip(X, lo, hi), reference.clip(X, lo, hi), rtol=0)


def test_log1p_domain_is_defined():
    X = np.array([[-2.0, -1.0, np.nan, np.inf, 0.0, 1e-20]])
    want = np.array([[np.nan, -np.inf, np.nan, np.inf, 0.0, 1e-20]])
    for module in (reference, cpu, cuda):
        same(module.log1p(X), want, rtol=0)


def same_quantiles(actual, expected, X):
    # One formula everywhere (kernels/_scalar.py), but CUDA fuses its multiply and add:
    # one rounding instead of two, a few ulps of the column's largest value at most.
    scale = float(np.nanmax(np.abs(X), initial=0.0)) if X.size else 0.0
    same(actual, expected, rtol=0, atol=4 * np.finfo(np.float64).eps * scale)


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(X=matrices(st.one_of(finite, st.just(np.nan))), qs=st.lists(st.floats(0, 1), max_size=4))
def test_quantiles_random(backend, X, qs):
    qs = np.asarray(qs, dtype=np.float64)
    same_quantiles(backend.quantiles(X, qs), reference.quantiles(X, qs), X)


@pytest.mark.parametrize("backend", ACCELERATED)
@pytest.mark.parametrize("case", list(edge_matrices(with_inf=False)))
def test_quantiles_edge_cases(backend, case):
    X = edge_matrices(with_inf=False)[case]
    qs = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    same_quantiles(backend.quantiles(X, qs), reference.quantiles(X, qs), X)


def test_reference_quantiles_match_numpy():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(101, 3))
    X[::7, 1] = np.nan
    qs = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0])
    # NumPy's own interpolation formula: equal up to rounding in the last place
    np.testing.assert_allclose(
        reference.quantiles(X, qs), np.nanquantile(X, qs, axis=0), rtol=1e-15, atol=1e-16
    )


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(X=matrices(), data=st.data())
def test_bucketize_random(backend, X, data):
    d = X.shape[1]
    k = data.draw(st.integers(0, 5))
    edges = np.sort(data.draw(hnp.arrays(np.float64, (d, k), elements=finite)), axis=1)
    edges = np.hstack([edges, np.full((d, 1), np.inf)])  # padding, not in use
    n_edges = np.full(d, k, dtype=np.int64)
    same(backend.bucketize(X, edges, n_edges), reference.bucketize(X, edges, n_edges), rtol=0)


@pytest.mark.parametrize("backend", ACCELERATED)
@pytest.mark.parametrize("case", list(edge_matrices()))
def test_impute_edge_cases(backend, case):
    X = edge_matrices()[case]
    fill = np.arange(X.shape[1], dtype=np.float64) + 0.5
    for cols in (np.zeros(0, dtype=np.int64), np.arange(X.shape[1], dtype=np.int64)[::-1]):
        same(backend.impute(X, fill, cols), reference.impute(X, fill, cols), rtol=0)


# ---------------------------------------------------------------- categories

small_ints = hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-5, 5))
small_floats = hnp.arrays(
    np.float64, st.integers(0, 30), elements=st.sampled_from([np.nan, -0.5, 0.0, 1.0, 2.5, 1e300])
)


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(values=st.one_of(small_ints, small_floats))
def test_unique_and_codes_random(backend, values):
    cats = reference.unique(values)
    same(np.asarray(backend.unique(values)), cats, rtol=0)
    probe = np.concatenate([values, values[:3] + 1])  # includes unseen values
    same(backend.lookup_codes(probe, cats), reference.lookup_codes(probe, cats), rtol=0)
    codes = reference.lookup_codes(values, cats)
    weights = (np.arange(len(values)) % 5 - 2) * 0.25  # exact sums in any order
    for w in (weights, np.zeros(0)):
        got_counts, got_sums = backend.bincount(codes, w, len(cats))
        want_counts, want_sums = reference.bincount(codes, w, len(cats))
        same(np.asarray(got_counts), want_counts, rtol=0)
        same(np.asarray(got_sums), want_sums, rtol=0)
    same(backend.one_hot(codes, len(cats)), reference.one_hot(codes, len(cats)), rtol=0)
    table = np.arange(len(cats), dtype=np.float64) * 0.5
    same(backend.take(codes, table, -7.0), reference.take(codes, table, -7.0), rtol=0)


def test_unique_of_huge_int64_keys():
    values = np.array([2**62 + 1, 2**62, 2**62 + 1, -(2**62)], dtype=np.int64)
    for module in (cpu, cuda):
        same(np.asarray(module.unique(values)), np.array([-(2**62), 2**62, 2**62 + 1]), rtol=0)


def test_one_hot_and_take_of_no_rows():
    codes = np.zeros(0, dtype=np.int64)
    for module in (reference, cpu, cuda):
        same(module.one_hot(codes, 3), np.zeros((0, 3)))
        same(module.take(codes, np.ones(3), 0.0), np.zeros(0))


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(
    keys=hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-(2**63), 2**63 - 1)),
    n_buckets=st.integers(1, 1000),
    seed=st.integers(0, 2**31),
)
def test_hash_int64_random(backend, keys, n_buckets, seed):
    same(
        backend.hash_int64(keys, n_buckets, seed),
        reference.hash_int64(keys, n_buckets, seed),
        rtol=0,
    )


def test_hash_int64_is_pinned():
    # Stability across releases and machines: these buckets must never change.
    keys = np.array([0, 1, -1, 2**40], dtype=np.int64)
    want = reference.hash_int64(keys, 2**31, 0)
    for module in (cpu, cuda):
        same(module.hash_int64(keys, 2**31, 0), want, rtol=0)
    assert want.tolist() == PINNED_INT_BUCKETS


# Key 0, seed 0 is splitmix64's published first output from state 0: 0xE220A8397B1DCDAF.
PINNED_INT_BUCKETS = [0xE220A8397B1DCDAF % 2**31, 151149761, 459615264, 1930478473]


@pytest.mark.parametrize("backend", ACCELERATED)
def test_hash_bytes(backend):
    words = np.array(["", "a", "ab", "käse", "a" * 40], dtype=str)
    data = np.char.encode(words, "utf-8")
    lengths = np.char.str_len(data).astype(np.int64)
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(len(words), -1)
    got = backend.hash_bytes(raw, lengths, 97, 3)
    same(got, reference.hash_bytes(raw, lengths, 97, 3), rtol=0)
    assert len(set(reference.hash_bytes(raw, lengths, 2**40, 3).tolist())) == len(words)


# ---------------------------------------------------------------- time


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(
    t=hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-(10**13), 10**13)),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_datetime_parts_random(backend, t, unit):
    same(backend.datetime_parts(t, unit), reference.datetime_parts(t, unit), rtol=0)


@pytest.mark.parametrize("backend", ACCELERATED)
def test_datetime_parts_edges(backend):
    nat = np.iinfo(np.int64).min
    t = np.array([0, -1, 951_782_400, 4_107_542_399, -62_135_596_800, nat, 2**62], dtype=np.int64)
    want = reference.datetime_parts(t, "s")
    assert want[:3].tolist() == [
        [1970, 1, 1, 3, 0, 1],
        [1969, 12, 31, 2, 23, 365],
        [2000, 2, 29, 1, 0, 60],  # a leap day, a Tuesday
    ]
    assert want[5].tolist() == [-1] * 6
    same(backend.datetime_parts(t, "s"), want, rtol=0)


def rolling_case(rng, n, n_entities=3, span=20):
    entity = np.sort(rng.integers(0, n_entities, n))
    time = rng.integers(0, span, n)
    order = np.lexsort((time, entity))
    values = rng.normal(size=n)
    values[rng.random(n) < 0.15] = np.nan
    return entity[order].astype(np.int64), time[order].astype(np.int64), values


@pytest.mark.parametrize("backend", ACCELERATED)
@FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30), window=st.integers(1, 8))
def test_rolling_random(backend, seed, n, window):
    entity, time, values = rolling_case(np.random.default_rng(seed), n)
    same(
        backend.rolling(entity, time, values, window),
        reference.rolling(entity, time, values, window),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("backend", ACCELERATED)
def test_rolling_infinities_and_huge_values(backend):
    entity = np.zeros(7, dtype=np.int64)
    time = np.arange(7, dtype=np.int64)
    values = np.array([1e308, 1e308, 1.0, np.inf, -np.inf, 2.0, 3.0])
    want = reference.rolling(entity, time, values, 2)
    same(backend.rolling(entity, time, values, 2), want, rtol=1e-15)
    assert want[1, 1] == np.inf  # the sum overflows while both 1e308 are in the window
    assert want[2, 1] == 1e308 + 1.0  # one has left: the sum is finite again
    assert np.isnan(want[4, 1])  # inf + -inf
    assert want[6, 1] == 5.0


def test_small_inputs_take_the_numpy_path_with_the_same_numbers(no_gpu):
    from kernels._backend import select
    from kernels.transforms import StandardScaler

    rng = np.random.default_rng(5)
    X = rng.normal(size=(5000, 8)) * 1e3
    scaler = StandardScaler().fit(X)

    def chosen(X):
        return select("transforms", X, numpy_when_small=True).__name__

    assert chosen(X[:1]) == "kernels.transforms.reference"
    assert chosen(X) == "kernels.transforms.cpu"
    small = scaler.transform(X[:3])
    scaler.backend = "cpu"
    # (x - mean) / scale, each step correctly rounded on both paths: within an ulp or two
    np.testing.assert_allclose(small, scaler.transform(X[:3]), rtol=1e-15, atol=0)
    assert not np.allclose(small, scaler.transform(X[1:4]), rtol=1e-15)  # rows matter


def test_fit_transform_equals_fit_then_transform():
    from kernels.transforms import (
        FrequencyEncoder,
        HashingEncoder,
        MinMaxScaler,
        OneHotEncoder,
        QuantileBucketizer,
        QuantileClipper,
        RobustScaler,
        SimpleImputer,
        StandardScaler,
    )

    rng = np.random.default_rng(11)
    X = rng.normal(size=(200, 3))
    codes = rng.integers(0, 5, 200)
    for est, data in [
        (StandardScaler(), X), (MinMaxScaler(), X), (RobustScaler(), X), (QuantileClipper(), X),
        (QuantileBucketizer(), X), (SimpleImputer(), X), (OneHotEncoder(), codes),
        (FrequencyEncoder(), codes), (HashingEncoder(), codes),
    ]:  # fmt: skip
        # two fits: on a GPU, sums by atomics come out in any order, so up to rounding
        np.testing.assert_allclose(
            est.fit_transform(data), est.fit(data).transform(data), rtol=1e-12, atol=1e-12
        )
