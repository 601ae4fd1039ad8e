"""ROC AUC and fairness counts: every backend against the reference, scikit-learn, fairlearn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from kernels.stats import (
    accuracy,
    demographic_parity_difference,
    equalized_odds_difference,
    group_counts,
    group_rates,
    log_loss,
    roc_auc,
)

BACKENDS = ["reference", "cpu", "cuda"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_roc_auc_matches_sklearn(backend):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    s = (rng.normal(size=150) + y).round(1)  # many ties
    s[:3] = [1e308, -1e308, 1e300]
    assert roc_auc(y, s, backend=backend) == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    # scikit-learn rejects ±inf; we rank them like the largest finite values
    s_inf = np.r_[np.inf, -np.inf, s[2:]]
    assert roc_auc(y, s_inf, backend=backend) == roc_auc(y, s, backend=backend)
    s32 = s.clip(-1e30, 1e30).astype(np.float32)
    assert roc_auc(y.astype(bool), s32, backend=backend) == pytest.approx(
        roc_auc_score(y, s32), rel=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_roc_auc_small_cases(backend):
    assert roc_auc([0, 1], [0.1, 0.9], backend=backend) == 1.0
    assert roc_auc([1, 0], [0.1, 0.9], backend=backend) == 0.0
    assert roc_auc([0, 1, 0, 1], [5, 5, 5, 5], backend=backend) == 0.5  # all tied
    assert roc_auc([0, 1, 1], [0, 7, 7], backend=backend) == 1.0  # int scores


@pytest.mark.parametrize(
    "y,s,msg",
    [
        ([1, 1], [0.1, 0.2], "both classes"),
        ([], [], "both classes"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        (["a", "b"], [0.1, 0.2], "0/1 labels"),
    ],
)
def test_roc_auc_errors(y, s, msg):
    with pytest.raises(ValueError, match=msg):
        roc_auc(y, s, backend="cpu")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=2, max_size=80))
def test_roc_auc_cpu_property(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.all() or not y.any():
        return
    assert roc_auc(y, s, backend="cpu") == pytest.approx(roc_auc_score(y, s), rel=1e-12)


def test_roc_auc_ties_across_thread_blocks():
    # a run of ties longer than one thread's block in the CPU kernel
    y = np.r_[np.zeros(5000), np.ones(5000)].astype(int)
    s = np.r_[np.zeros(4000), np.ones(6000)]
    assert roc_auc(y, s, backend="cpu") == pytest.approx(roc_auc_score(y, s), rel=1e-12)


def test_accuracy_and_log_loss():
    assert accuracy([0, 1, 1], [0.2, 0.7, 0.4]) == pytest.approx(2 / 3)
    assert log_loss([1, 0], [1.0, 0.0]) < 1e-12


# -- fairness --------------------------------------------------------------------------------


def fair_data(rng, n):
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < 0.3 + 0.4 * y_true).astype(int)
    group = rng.integers(0, 3, n)
    return y_true, y_pred, group


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_counts_match_reference(backend):
    rng = np.random.default_rng(1)
    yt, yp, g = fair_data(rng, 120)
    labels, counts = group_counts(yt, yp, g, backend=backend)
    _, want = group_counts(yt, yp, g, backend="reference")
    np.testing.assert_array_equal(labels, [0, 1, 2])
    np.testing.assert_array_equal(counts, want)
    for k in range(3):
        m = g == k
        assert list(counts[k]) == [m.sum(), yp[m].sum(), yt[m].sum(), (yt & yp)[m].sum()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_counts_edge_cases(backend):
    labels, counts = group_counts([], [], np.array([], dtype=int), backend=backend)
    assert counts.shape == (0, 4)
    labels, counts = group_counts([True], [False], ["b"], backend=backend)  # string labels
    assert list(labels) == ["b"] and counts.tolist() == [[1, 0, 1, 0]]
    _, counts = group_counts([1, 0], [1, 1], np.array([3, 3], dtype=np.uint8), backend=backend)
    assert counts.tolist() == [[0, 0, 0, 0]] * 3 + [[2, 2, 1, 1]]  # unused codes count zero


@pytest.mark.parametrize(
    "args,msg",
    [
        (([0, 1], [0, 1], [0]), "same length"),
        (([0, 1], [0, 3], [0, 1]), "only 0 and 1"),
        (([0, 1], [0, 1], [-1, 0]), ">= 0"),
    ],
)
def test_group_counts_errors(args, msg):
    with pytest.raises(ValueError, match=msg):
        group_counts(*args)


def test_rates_and_differences_by_hand():
    counts = np.array([[10, 5, 4, 3], [10, 2, 5, 1], [4, 0, 0, 0]])
    r = group_rates(counts)
    np.testing.assert_allclose(r["selection_rate"], [0.5, 0.2, 0.0])
    np.testing.assert_allclose(r["tpr"], [0.75, 0.2, np.nan])
    np.testing.assert_allclose(r["fpr"], [2 / 6, 1 / 5, 0.0])
    assert demographic_parity_difference(counts) == pytest.approx(0.5)
    assert equalized_odds_difference(counts) == pytest.approx(0.55)


def test_against_fairlearn():
    fairlearn = pytest.importorskip("fairlearn.metrics")
    rng = np.random.default_rng(2)
    yt, yp, g = fair_data(rng, 2000)
    _, counts = group_counts(yt, yp, g, backend="cpu")
    assert demographic_parity_difference(counts) == pytest.approx(
        fairlearn.demographic_parity_difference(yt, yp, sensitive_features=g), rel=1e-12
    )
    assert equalized_odds_difference(counts) == pytest.approx(
        fairlearn.equalized_odds_difference(yt, yp, sensitive_features=g), rel=1e-12
    )
    frame = fairlearn.MetricFrame(
        metrics={
            "selection_rate": fairlearn.selection_rate,
            "tpr": fairlearn.true_positive_rate,
            "fpr": fairlearn.false_positive_rate,
        },
        y_true=yt,
        y_pred=yp,
        sensitive_features=g,
    )
    r = group_rates(counts)
    for name in ("selection_rate", "tpr", "fpr"):
        np.testing.assert_allclose(r[name], frame.by_group[name].to_numpy(), rtol=1e-12)


@pytest.mark.gpu
def test_cupy_arrays_run_on_the_gpu():
    from kernels._backend import gpu_available

    if not gpu_available():
        pytest.skip("needs a CUDA GPU with CuPy")
    import cupy

    from kernels.stats import ReferenceSummary, drift, histogram

    rng = np.random.default_rng(3)
    yt, yp, g = fair_data(rng, 100_000)
    s = rng.normal(size=yt.size) + yt
    assert roc_auc(cupy.asarray(yt), cupy.asarray(s)) == pytest.approx(
        roc_auc_score(yt, s), rel=1e-9
    )
    _, on_gpu = group_counts(cupy.asarray(yt), cupy.asarray(yp), cupy.asarray(g))
    np.testing.assert_array_equal(on_gpu, group_counts(yt, yp, g, backend="reference")[1])
    edges = np.linspace(-3, 3, 11)
    np.testing.assert_array_equal(histogram(cupy.asarray(s), edges), np.histogram(s, edges)[0])
    ref, cur = rng.normal(size=(5000, 3)), rng.normal(0.1, 1, size=(4000, 3))
    summary = ReferenceSummary.fit(ref)
    a, b = drift(summary, cupy.asarray(cur)), drift(summary, cur, backend="reference")
    for k in ("psi", "ks_statistic", "ks_pvalue", "wasserstein", "jensenshannon"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-9)


# -- serial path for small inputs, parallel for large ----------------------------------------


@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_roc_auc_and_group_counts_paths_agree(monkeypatch, path):
    from kernels.stats import cpu

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 3000)
    s = rng.normal(size=3000).round(1)  # ties, some across the thread blocks
    yp = rng.integers(0, 2, 3000)
    g = rng.integers(0, 5, 3000)
    want_auc = roc_auc(y, s, backend="cpu")  # small input: the serial path
    _, want_counts = group_counts(y, yp, g, backend="cpu")
    monkeypatch.setattr(cpu, "SERIAL_BELOW", 10**12 if path == "serial" else 0)
    # exact on both paths: the rank sum adds half-integers, which float64 holds exactly
    assert roc_auc(y, s, backend="cpu") == want_auc
    np.testing.assert_array_equal(group_counts(y, yp, g, backend="cpu")[1], want_counts)
    assert want_auc == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    np.testing.assert_array_equal(want_counts, group_counts(y, yp, g, backend="reference")[1])
