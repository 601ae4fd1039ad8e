"""Categorical encoders: against scikit-learn and hand-computed values, per backend."""

import json

import numpy as np
import pytest
import sklearn.preprocessing

from kernels.summary import CategorySummary
from kernels.transforms import (
    FrequencyEncoder,
    HashingEncoder,
    OneHotEncoder,
    TargetEncoder,
    hash_buckets,
)

BACKENDS = ["reference", "cpu", "cuda"]
COLUMNS = {
    "int": np.array([3, 1, 3, 7, 1, 3, -2], dtype=np.int64),
    "float": np.array([0.5, 1.0, 0.5, 2.0, 1.0, 0.5, -3.0]),
    "text": np.array(["b", "a", "b", "käse", "a", "b", ""]),
}


def close(a, b, rtol=1e-14):
    np.testing.assert_allclose(np.asarray(a), b, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(COLUMNS))
def test_one_hot_matches_sklearn(backend, kind):
    x = COLUMNS[kind]
    ours = OneHotEncoder(backend=backend).fit(x)
    theirs = sklearn.preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    theirs.fit(x.reshape(-1, 1))
    assert ours.categories_.tolist() == theirs.categories_[0].tolist()
    probe = np.concatenate([x, x[:1] if kind == "text" else x[:1] + 100])  # one unknown
    if kind == "text":
        probe[-1] = "zz"
    got = ours.transform(probe)
    assert got.dtype == np.float64
    close(got, theirs.transform(probe.reshape(-1, 1)), rtol=0)
    assert got[-1].sum() == 0.0
    with pytest.raises(ValueError, match="unknown categories"):
        OneHotEncoder("error", backend=backend).fit(x).transform(probe)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_values_encode_as_zeros_never_as_unknown(backend):
    x = np.array([1.0, np.nan, 2.0, 1.0])
    enc = OneHotEncoder("error", backend=backend).fit(x)
    assert enc.categories_.tolist() == [1.0, 2.0]
    close(enc.transform(x), [[1, 0], [0, 0], [0, 1], [1, 0]], rtol=0)
    text = np.array(["a", None, "b"], dtype=object)
    close(OneHotEncoder("error").fit(text).transform(text), [[1, 0], [0, 0], [0, 1]], rtol=0)
    close(FrequencyEncoder(backend=backend).fit(x).transform(x), [2 / 3, 0, 1 / 3, 2 / 3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_int_categories_accept_float_values(backend):
    enc = OneHotEncoder(backend=backend).fit(np.array([1, 2, 2]))
    close(enc.transform(np.array([2.0, np.nan, 1.5])), [[0, 1], [0, 0], [0, 0]], rtol=0)
    with pytest.raises(ValueError, match="fitted on numeric categories, got text"):
        enc.transform(np.array(["1"]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(COLUMNS))
def test_frequency_encoder(backend, kind):
    x = COLUMNS[kind]
    enc = FrequencyEncoder(backend=backend).fit(x)
    values, counts = np.unique(x, return_counts=True)
    want = {v: c / len(x) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}
    close(enc.transform(x), [want[v] for v in x.tolist()])
    unseen = np.array(["zz"]) if kind == "text" else np.array([99])
    close(enc.transform(unseen), [0.0], rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(COLUMNS))
@pytest.mark.parametrize("smooth", [0.0, 2.5])
def test_target_encoder_matches_sklearn(backend, kind, smooth):
    x = COLUMNS[kind]
    y = np.array([1.0, 0.0, 2.0, 5.0, 1.0, 0.5, -1.0])
    ours = TargetEncoder(smooth=smooth, backend=backend).fit(x, y)
    theirs = sklearn.preprocessing.TargetEncoder(smooth=smooth, target_type="continuous")
    theirs.fit(x.reshape(-1, 1), y)
    assert ours.categories_.tolist() == theirs.categories_[0].tolist()
    close(ours.encodings_, theirs.encodings_[0], rtol=1e-13)
    close(ours.prior_, theirs.target_mean_)
    # the formula by hand for the category seen three times
    b = 3 if kind == "int" else (0.5 if kind == "float" else "b")
    mean_b = (1.0 + 2.0 + 0.5) / 3
    want_b = (3 * mean_b + smooth * y.mean()) / (3 + smooth)
    close(ours.transform(np.array([b])), [want_b])
    unseen = np.array(["zz"]) if kind == "text" else np.array([99])
    close(ours.transform(unseen), [y.mean()])


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_encoder_rejects_bad_targets(backend):
    x = np.array([1, 2])
    with pytest.raises(ValueError, match="NaN or infinity"):
        TargetEncoder(backend=backend).fit(x, [1.0, np.nan])
    with pytest.raises(ValueError, match="y has 3 rows"):
        TargetEncoder(backend=backend).fit(x, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="smooth must be finite"):
        TargetEncoder(smooth=-1, backend=backend).fit(x, [1.0, 2.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("est", [OneHotEncoder, FrequencyEncoder])
def test_fit_without_values_is_an_error_and_empty_transform_is_empty(backend, est):
    with pytest.raises(ValueError, match="no non-missing values"):
        est(backend=backend).fit(np.array([np.nan, np.nan]))
    with pytest.raises(ValueError, match="no non-missing values"):
        est(backend=backend).fit(np.zeros(0))
    enc = est(backend=backend).fit(np.array([4, 5]))
    assert np.asarray(enc.transform(np.zeros(0, dtype=np.int64))).shape[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_hash_buckets_are_stable_and_dtype_blind(backend):
    ints = hash_buckets(np.array([0, 1, 3, -7]), 1000, backend=backend)
    floats = hash_buckets(np.array([0.0, 1.0, 3.0, -7.0]), 1000, backend=backend)
    assert np.asarray(ints).tolist() == np.asarray(floats).tolist()
    assert np.asarray(ints).tolist() == hash_buckets(np.array([0, 1, 3, -7]), 1000).tolist()
    neg_zero = hash_buckets(np.array([-0.0, 0.5, np.nan]), 1000, backend=backend)
    assert neg_zero[0] == ints[0] and neg_zero[2] == -1
    text = hash_buckets(np.array(["a", "b", "a", None], dtype=object), 64, backend=backend)
    assert text[0] == text[2] and text[3] == -1
    # another seed moves keys to other buckets
    assert (
        hash_buckets(np.arange(50), 1000, seed=1).tolist()
        != hash_buckets(np.arange(50), 1000).tolist()
    )


def test_hash_buckets_spread_evenly():
    buckets = hash_buckets(np.arange(20_000), 16, backend="cpu")
    counts = np.bincount(buckets, minlength=16)
    assert counts.min() > 1_100 and counts.max() < 1_400  # 1250 expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_hashing_encoder(backend):
    x = np.array(["a", "b", "a", ""])
    out = HashingEncoder(n_buckets=8, backend=backend).fit().transform(x)
    assert out.shape == (4, 8) and out.sum(axis=1).tolist() == [1.0] * 4
    np.testing.assert_array_equal(out[0], out[2])
    with pytest.raises(ValueError, match="n_buckets must be an int >= 1"):
        HashingEncoder(n_buckets=0).fit()


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_fit_on_whole_equals_merge_of_partition_fits(backend):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, 30)
    y = rng.normal(size=30)
    parts = [slice(0, 4), slice(4, 17), slice(17, 30)]
    merged = None
    for p in parts:
        s = CategorySummary.from_values(x[p], y[p], backend=backend)
        merged = s if merged is None else merged.merge(s)
    merged = CategorySummary.from_dict(json.loads(json.dumps(merged.to_dict())))
    whole = TargetEncoder(smooth=3.0, backend=backend).fit(x, y)
    pieces = TargetEncoder.from_summary(merged, smooth=3.0)
    assert pieces.categories_.tolist() == whole.categories_.tolist()
    close(pieces.encodings_, whole.encodings_, rtol=1e-13)
    freq = FrequencyEncoder.from_summary(merged)
    close(freq.transform(x), FrequencyEncoder(backend=backend).fit(x).transform(x))


@pytest.mark.parametrize(
    "est",
    [OneHotEncoder("error"), FrequencyEncoder(), TargetEncoder(1.0), HashingEncoder(16)],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("kind", list(COLUMNS))
def test_state_round_trips_through_strict_json(est, kind):
    x = COLUMNS[kind]
    if isinstance(est, TargetEncoder):
        est.fit(x, np.arange(len(x), dtype=float))
    else:
        est.fit(x)
    again = type(est).from_dict(json.loads(json.dumps(est.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(again.transform(x), est.transform(x))
