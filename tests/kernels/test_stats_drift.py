"""Histograms, quantiles and drift: every backend against the NumPy reference and SciPy."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as sps
from scipy.spatial import distance

from kernels.stats import ReferenceSummary, drift, histogram, jensenshannon, psi, quantiles
from kernels.stats.kstest import _kolmogorov_sf, ks_pvalue

BACKENDS = ["reference", "cpu", "cuda"]
FAST = ["reference", "cpu"]  # hypothesis runs many examples: not on the CUDA simulator
MEASURES = ("psi", "ks_statistic", "ks_pvalue", "wasserstein", "jensenshannon")

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
any_float = st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e300, -1e-300]))


# -- histogram -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_matches_numpy(backend):
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(size=150), [np.nan, np.inf, -np.inf, -2.0, 2.0, 5.0]]
    edges = np.linspace(-2, 2, 7)
    expected = np.histogram(x[~np.isnan(x)], edges)[0]
    got = histogram(x, edges, backend=backend)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_histogram_edge_cases(backend):
    edges = np.array([-np.inf, 0.0, np.inf])
    np.testing.assert_array_equal(histogram([], edges, backend=backend), [0, 0])
    np.testing.assert_array_equal(histogram([3], [3, 3], backend=backend), [1])  # one point
    got = histogram(np.array([-1e308, -0.0, 1e308, np.inf, np.nan]), edges, backend=backend)
    np.testing.assert_array_equal(got, [1, 3])  # +inf is the closed right edge
    ints = histogram(np.arange(10), [0, 5, 9], backend=backend)
    np.testing.assert_array_equal(ints, [5, 5])
    f32 = histogram(np.linspace(0, 1, 11, dtype=np.float32), [0, 0.5, 1], backend=backend)
    np.testing.assert_array_equal(
        f32, np.histogram(np.linspace(0, 1, 11, dtype=np.float32), [0, 0.5, 1])[0]
    )


@pytest.mark.parametrize("edges", [[1.0], [2.0, 1.0], [0.0, np.nan, 1.0]])
def test_histogram_rejects_bad_edges(edges):
    with pytest.raises(ValueError, match="histogram: edges"):
        histogram([1.0], edges)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 60), elements=any_float), st.sampled_from(FAST))
def test_histogram_property(x, backend):
    edges = np.array([-np.inf, -10.0, 0.0, 0.5, 10.0, 1e301])
    np.testing.assert_array_equal(
        histogram(x, edges, backend=backend), histogram(x, edges, backend="reference")
    )


# -- quantiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantiles_match_numpy(backend):
    rng = np.random.default_rng(2)
    x = np.r_[rng.standard_t(3, size=101), np.nan, np.inf]
    q = np.array([0.0, 0.01, 0.25, 0.5, 0.9, 1.0])
    # NumPy's formula on every backend; a GPU's fused multiply-add may move the last bit
    atol = 4 * np.finfo(np.float64).eps * np.abs(x[:-2]).max()
    np.testing.assert_allclose(
        quantiles(x, q, backend=backend), np.quantile(x[:-2], q), rtol=1e-15, atol=atol
    )
    assert quantiles([7], 0.3, backend=backend) == 7.0  # one value; q scalar
    np.testing.assert_array_equal(quantiles(np.arange(5), [[0.5]], backend=backend), [[2.0]])


@pytest.mark.parametrize("bad", [[], [np.nan, np.inf]])
def test_quantiles_without_finite_values(bad):
    with pytest.raises(ValueError, match="no finite values"):
        quantiles(bad, [0.5])


def test_quantiles_reject_q_outside_unit_interval():
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        quantiles([1.0, 2.0], [1.5])


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 50), elements=finite),
    st.lists(st.floats(0, 1), min_size=1, max_size=5),
)
def test_quantiles_property(x, q):
    np.testing.assert_allclose(
        quantiles(x, q, backend="cpu"), np.quantile(x, q), rtol=1e-12, atol=1e-9
    )


def test_one_quantile_formula_for_stats_and_transforms():
    from kernels import _scalar
    from kernels.stats import cpu as stats_cpu
    from kernels.stats import cuda as stats_cuda
    from kernels.transforms import cpu as transforms_cpu
    from kernels.transforms import cuda as transforms_cuda
    from kernels.transforms import reference as transforms_reference

    for compiled in (
        stats_cpu.interpolate,
        stats_cuda._interpolate,
        transforms_cpu.interpolate,
        transforms_cuda._interpolate,
    ):
        assert compiled.py_func is _scalar.interpolate
    rng = np.random.default_rng(12)
    x = np.r_[rng.normal(size=40) * 100, np.nan]
    q = np.linspace(0, 1, 23)
    column = transforms_reference.quantiles(x.reshape(-1, 1), q)[:, 0]
    atol = 4 * np.finfo(np.float64).eps * np.nanmax(np.abs(x))
    for backend in BACKENDS:
        np.testing.assert_allclose(quantiles(x, q, backend=backend), column, rtol=0, atol=atol)


def test_interpolate_formula_edges():
    from kernels._scalar import interpolate

    s = np.array([1.0, 2.0, 4.0, 4.0, 10.0])
    assert np.isnan(interpolate(s, 0, 0.5))
    assert interpolate(s, 1, 0.7) == 1.0  # one value
    assert [interpolate(s, 5, q) for q in (0.0, 0.25, 1.0)] == [1.0, 2.0, 10.0]  # on points
    assert interpolate(s, 5, 0.125) == 1.5  # below the midpoint: from the lower neighbour
    assert interpolate(s, 5, 0.4375) == 3.5  # above it: from the upper one
    assert interpolate(s, 5, 0.6) == 4.0  # between equal values
    assert interpolate(s, 3, 1.0) == 4.0  # only the first m values count
    assert interpolate(np.array([np.inf, np.inf]), 2, 0.5) == np.inf  # not inf - inf


# -- PSI / JS helpers against Evidently's and SciPy's formulas -------------------------------


def evidently_fill(p):
    p = np.array(p, dtype=float)
    m = min(p[p != 0])
    np.place(p, p == 0, m / 10**6 if m <= 0.0001 else 0.0001)
    return p


@pytest.mark.parametrize(
    "ref,cur",
    [
        ([0.5, 0.5, 0.0], [0.2, 0.3, 0.5]),
        ([0.99995, 0.00005, 0.0], [0.3, 0.0, 0.7]),
        ([0.1, 0.9], [0.1, 0.9]),
    ],
)
def test_psi_and_js_formulas(ref, cur):
    r, c = evidently_fill(ref), evidently_fill(cur)
    assert psi(ref, cur) == pytest.approx(np.sum((c - r) * np.log(c / r)), rel=1e-12)
    assert jensenshannon(ref, cur) == pytest.approx(
        distance.jensenshannon(ref, cur), rel=1e-9, abs=1e-12
    )


# -- drift against a summary -----------------------------------------------------------------


def raw_measures(ref, cur, summary_col):
    """The expected values computed the long way from the raw columns."""
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    ks = sps.ks_2samp(ref, cur)
    w = sps.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    if summary_col.kind == "numeric":
        edges = np.r_[-np.inf, summary_col.cuts, np.inf]
        ref_p = np.histogram(ref, edges)[0] / ref.size
        cur_p = np.histogram(cur, edges)[0] / cur.size
    else:  # Evidently's value-count bins over the union of values
        keys = np.union1d(ref, cur)
        ref_p = np.array([np.sum(ref == k) for k in keys]) / ref.size
        cur_p = np.array([np.sum(cur == k) for k in keys]) / cur.size
    r, c = evidently_fill(ref_p), evidently_fill(cur_p)
    return {
        "psi": np.sum((c - r) * np.log(c / r)),
        "ks_statistic": ks.statistic,
        "ks_pvalue": ks.pvalue,
        "wasserstein": w,
        "jensenshannon": distance.jensenshannon(ref_p, cur_p),
    }


def mixed_data(rng, n):
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 4, n).astype(float),  # categorical: <= 20 distinct values
            rng.exponential(size=n).round(2),  # ties
            np.full(n, 3.0),  # constant
        ]
    )
    return X


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_matches_scipy_and_evidently(backend):
    rng = np.random.default_rng(3)
    ref = mixed_data(rng, 120)
    cur = mixed_data(rng, 90) * np.array([1.3, 1.0, 1.1, 1.0]) + np.array([0.4, 1.0, 0.0, 0.0])
    cur[0, 0], cur[1, 2], cur[2, 2] = np.nan, np.inf, -np.inf
    summary = ReferenceSummary.fit(ref, names=["a", "b", "c", "d"])
    assert [c.kind for c in summary.columns] == ["numeric", "categorical", "numeric", "categorical"]
    got = drift(summary, cur, backend=backend)
    assert got["columns"] == ["a", "b", "c", "d"]
    for j, col in enumerate(summary.columns):
        want = raw_measures(ref[:, j], cur[:, j], col)
        for k in MEASURES:
            assert got[k][j] == pytest.approx(want[k], rel=1e-9, abs=1e-12), (col.name, k)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(2)), elements=any_float),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 40), st.just(2)), elements=any_float),
)
def test_drift_cpu_matches_reference(ref, cur):
    if not np.isfinite(ref).any(axis=0).all():
        with pytest.raises(ValueError, match="no finite values"):
            ReferenceSummary.fit(ref)
        return
    summary = ReferenceSummary.fit(ref)
    a = drift(summary, cur, backend="cpu")
    b = drift(summary, cur, backend="reference")
    for k in MEASURES:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-300, equal_nan=True)


def test_drift_against_scipy_on_a_large_sample():
    # asymptotic KS p-value (n > 10,000) and more than 20 distinct values
    rng = np.random.default_rng(4)
    ref = rng.normal(size=12_000)
    cur = rng.normal(0.02, 1.0, size=11_000)
    got = drift(ReferenceSummary.fit(ref, max_points=20_000), cur, backend="cpu")
    ks = sps.ks_2samp(ref, cur)
    assert got["ks_statistic"][0] == pytest.approx(ks.statistic, rel=1e-12)
    assert got["ks_pvalue"][0] == pytest.approx(ks.pvalue, rel=1e-9)
    assert got["wasserstein"][0] == pytest.approx(
        sps.wasserstein_distance(ref, cur) / ref.std(), rel=1e-9
    )


def test_quantile_sketch_is_close():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=5000)
    cur = rng.normal(0.1, 1.0, size=3000)
    summary = ReferenceSummary.fit(ref, max_points=500)
    assert not summary.columns[0].exact
    got = drift(summary, cur, backend="cpu")
    assert got["ks_statistic"][0] == pytest.approx(sps.ks_2samp(ref, cur).statistic, abs=2 / 500)
    w = sps.wasserstein_distance(ref, cur) / ref.std()
    assert got["wasserstein"][0] == pytest.approx(w, abs=0.02)


def test_current_outside_reference_range_lands_in_end_bins():
    ref = np.linspace(0, 1, 100)
    summary = ReferenceSummary.fit(ref)
    got = drift(summary, np.full(10, 50.0), backend="cpu")
    assert got["ks_statistic"][0] == 1.0
    last_bin_only = np.zeros(summary.columns[0].proportions.size)
    last_bin_only[-1] = 1.0
    expected = distance.jensenshannon(summary.columns[0].proportions, last_bin_only)
    assert got["jensenshannon"][0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drift_edge_cases(backend):
    summary = ReferenceSummary.fit(np.array([[1.0, 2.0], [2.0, 2.0]]))
    # a column with no finite current value gives NaN; the other is still measured
    got = drift(summary, np.array([[np.nan, 2.0]]), backend=backend)
    assert np.isnan([got[k][0] for k in MEASURES]).all()
    assert got["ks_statistic"][1] == 0.0 and got["psi"][1] == 0.0
    with pytest.raises(ValueError, match="drift: data has no rows"):
        drift(summary, np.empty((0, 2)), backend=backend)
    with pytest.raises(ValueError, match="2 columns, the summary 2|has 3 columns"):
        drift(summary, np.ones((2, 3)), backend=backend)


def test_summary_round_trips_through_json():
    rng = np.random.default_rng(6)
    s = ReferenceSummary.fit(mixed_data(rng, 60).astype(np.float32))
    back = ReferenceSummary.from_dict(json.loads(json.dumps(s.to_dict())))
    cur = mixed_data(rng, 50)
    a, b = drift(s, cur, backend="cpu"), drift(back, cur, backend="cpu")
    for k in MEASURES:
        np.testing.assert_array_equal(a[k], b[k])


def test_summary_rejects_bad_input():
    with pytest.raises(ValueError, match="no finite values"):
        ReferenceSummary.fit(np.array([np.nan, np.inf]))
    with pytest.raises(ValueError, match="no rows"):
        ReferenceSummary.fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="encode categories first"):
        ReferenceSummary.fit(np.array(["a", "b"]))


def test_ks_pvalue_fallback_and_methods():
    assert ks_pvalue(0.3, 0, 5) != ks_pvalue(0.3, 0, 5)  # NaN without data
    assert ks_pvalue(0.05, 50_000, 40_000) == pytest.approx(
        sps.ks_2samp(np.arange(2), np.arange(2), method="asymp").pvalue * 0
        + _asymp(0.05, 50_000, 40_000)
    )
    # the no-SciPy fallback is Kolmogorov's limit
    assert _kolmogorov_sf(1.0) == pytest.approx(sps.kstwobign.sf(1.0), rel=1e-12)
    assert _kolmogorov_sf(0.1) == 1.0
    with pytest.raises(ValueError, match="method"):
        ks_pvalue(0.1, 3, 3, method="magic")


@pytest.mark.parametrize("m", [20_001, 166_667])
@pytest.mark.parametrize("z", [1.6, 2.5, 4.0])
def test_large_sample_tail_matches_scipy(m, z):
    d = z / np.sqrt(m)
    assert ks_pvalue(d, 2 * m, 2 * m) == pytest.approx(sps.kstwo.sf(d, m), rel=1e-4)


def _asymp(d, n1, n2):
    en = n1 * n2 / (n1 + n2)
    return sps.kstwo.sf(d, round(en))


# -- serial path for small inputs, parallel for large ----------------------------------------


@pytest.fixture
def stats_cpu(monkeypatch):
    """The CPU module and a switch forcing its serial (small-input) or parallel path."""
    from kernels.stats import cpu

    def force(path):
        monkeypatch.setattr(cpu, "SERIAL_BELOW", 10**12 if path == "serial" else 0)

    return cpu, force


@pytest.mark.parametrize(
    "edges",
    [
        np.linspace(-0.3, 0.7, 11),  # evenly spaced: the computed-bin path
        np.r_[-np.inf, np.linspace(-2, 2, 9), np.inf],  # infinite ends: binary search
        np.array([-3.0, -0.5, 0.0, 0.1, 2.0, 2.5]),  # uneven
    ],
)
def test_histogram_serial_and_parallel_paths_agree(stats_cpu, edges):
    cpu, force = stats_cpu
    rng = np.random.default_rng(7)
    x = np.r_[rng.normal(size=5000), edges[np.isfinite(edges)], np.nan]
    force("serial")
    small = histogram(x, edges, backend="cpu")
    force("parallel")
    large = histogram(x, edges, backend="cpu")
    np.testing.assert_array_equal(small, large)
    np.testing.assert_array_equal(large, np.histogram(x[~np.isnan(x)], edges)[0])


def test_histogram_even_edges_match_numpy_on_the_edges():
    # edges whose float values are not exactly first + i * width: the computed bin must be
    # corrected against the edges, as np.histogram does
    for lo, hi, k in [(-0.3, 0.7, 10), (0.1, 0.7, 6), (-4.0, 4.0, 32), (1e-9, 3e-9, 7)]:
        edges = np.linspace(lo, hi, k + 1)
        from kernels.stats.cpu import evenly_spaced

        assert evenly_spaced(edges)
        x = np.r_[edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]
        x = np.r_[x, np.random.default_rng(k).uniform(lo, hi, 1000)]
        want = np.histogram(x, edges)[0]  # the last edge is inside the last bin
        np.testing.assert_array_equal(histogram(x, edges, backend="cpu"), want)
        np.testing.assert_array_equal(histogram(x, edges, backend="reference"), want)
        assert histogram([hi], edges, backend="cpu")[-1] == 1
    assert not evenly_spaced(np.array([0.0, 1.0, 3.0]))
    assert not evenly_spaced(np.array([-np.inf, 0.0, np.inf]))
    assert not evenly_spaced(np.array([3.0, 3.0]))


def test_histogram_large_input_matches_numpy():
    rng = np.random.default_rng(8)
    x = rng.normal(size=200_000).round(2)  # many values exactly on edges
    edges = np.linspace(-4, 4, 33)
    np.testing.assert_array_equal(histogram(x, edges, backend="cpu"), np.histogram(x, edges)[0])


def test_drift_serial_and_parallel_paths_agree(stats_cpu):
    cpu, force = stats_cpu
    rng = np.random.default_rng(9)
    ref = mixed_data(rng, 3000)
    cur = mixed_data(rng, 2500) * np.array([1.2, 1.0, 1.0, 1.0]) + np.array([0.1, 1, 0, 0])
    cur[::97, 0] = np.nan
    for max_points in (10_000, 300):  # exact reference and a quantile sketch
        summary = ReferenceSummary.fit(ref, max_points=max_points)
        force("serial")
        small = drift(summary, cur, backend="cpu")
        force("parallel")
        large = drift(summary, cur, backend="cpu")
        want = drift(summary, cur, backend="reference")
        for k in MEASURES:
            # the same blocks summed in the same order; compiled twice, so compared with a
            # rounding tolerance: a row lost or counted twice moves W1 by about 1/n
            np.testing.assert_allclose(small[k], large[k], rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(large[k], want[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(cpu.columns(cur), np.ascontiguousarray(cur.T))
        np.testing.assert_array_equal(cpu.columns(np.asfortranarray(cur)), cur.T)


def test_drift_ks_and_wasserstein_exact_on_ties_and_shared_values():
    # current values equal to reference points, runs of ties, values beyond both ends
    rng = np.random.default_rng(10)
    ref = rng.integers(0, 60, 4000).astype(float) / 4
    cur = np.r_[rng.integers(-8, 70, 3000).astype(float) / 4, np.full(500, 7.25)]
    got = drift(ReferenceSummary.fit(ref), cur, backend="cpu")
    ks = sps.ks_2samp(ref, cur)
    assert got["ks_statistic"][0] == pytest.approx(ks.statistic, rel=1e-12)
    assert got["ks_pvalue"][0] == pytest.approx(ks.pvalue, rel=1e-9)
    assert got["wasserstein"][0] == pytest.approx(
        sps.wasserstein_distance(ref, cur) / ref.std(), rel=1e-12
    )


# -- the CPU bucket pass against the sorting reference ---------------------------------------


def bucket_cases():
    """(name, reference, current, max_points): each exercises one path of the pass."""
    rng = np.random.default_rng(11)
    grid = np.arange(100.0)
    unif = rng.uniform(-0.5, 99.5, 3000)
    normal = rng.normal(size=3000)
    outlier = np.r_[rng.normal(size=2000), 1e6]  # every point but one in one index cell
    return [
        # the same distribution: the current CDF crosses the reference's in many intervals
        ("crossing", grid.repeat(3), unif, 10_000),
        ("crossing_normal", normal, rng.normal(size=2500), 10_000),
        # current values on the reference points, runs of ties, and between them
        ("ties", grid.repeat(2), np.r_[grid[::3].repeat(7), unif[:500].round(1)], 10_000),
        ("all_in_one_interval", grid, np.full(400, 41.25), 10_000),
        ("all_on_one_point", grid, np.full(400, 41.0), 10_000),
        # beyond both ends: the first interval, and the last with cdf 1 (exact) or < 1
        ("outside_range", normal, np.r_[normal[:200] * 4, -50.0, 80.0], 10_000),
        ("outside_range_sketch", normal, np.r_[normal[:900] * 4, 30.0], 40),
        ("nan_inf", normal, np.r_[normal[:700], np.nan, np.inf, -np.inf, np.nan], 10_000),
        # more distinct reference values than max_points: a quantile sketch
        ("sketch", rng.exponential(size=4000), rng.exponential(1.2, size=3000), 64),
        ("categorical_unseen", grid[:5].repeat(40), np.r_[grid[:6], -1.0, 2.5].repeat(30), 10_000),
        ("one_point", np.full(50, 3.0), np.r_[2.0, 3.0, 3.0, 4.5, np.nan], 10_000),
        # more than STEPS points in one index cell: the lookup's binary search
        ("wide_cell", outlier, np.r_[rng.normal(size=1500), 3e5, 2e6], 10_000),
        # a range beyond float64 (few values, so no bins): the index has a single cell
        ("huge_range", np.r_[-1e308, grid[:9], 1e308], np.r_[unif[:400], 1.5e308, -1e300], 10_000),
    ]


@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_drift_bucket_pass_matches_reference(stats_cpu, path):
    cpu, force = stats_cpu
    force(path)
    for name, ref, cur, max_points in bucket_cases():
        # two columns, so the parallel path splits them over threads
        summary = ReferenceSummary.fit(np.c_[ref, ref[::-1]], max_points=max_points)
        cur2 = np.c_[cur, cur[::-1]]
        got = drift(summary, cur2, backend="cpu")
        want = drift(summary, cur2, backend="reference")
        for k in MEASURES:
            np.testing.assert_allclose(
                got[k], want[k], rtol=1e-12, atol=1e-300, equal_nan=True, err_msg=f"{name} {k}"
            )
        if name.startswith("crossing") or name == "categorical_unseen":
            for j, col in enumerate(summary.columns):
                raw = raw_measures(np.c_[ref, ref[::-1]][:, j], cur2[:, j], col)
                for k in MEASURES:
                    assert got[k][j] == pytest.approx(raw[k], rel=1e-9, abs=1e-12), (name, k)


def test_drift_bucket_index_is_exact_at_cell_edges():
    # values one ulp either side of every point and of every index cell's edge
    from kernels.stats import cpu

    rng = np.random.default_rng(12)
    for points in (np.unique(rng.normal(size=300).round(3)), np.r_[np.arange(50.0), 1e9]):
        P, cell, scale = cpu._index(points, cpu.CELLS_PER_POINT * points.size)
        assert P[0] == -np.inf and P[-1] == np.inf and cell[-1] == points.size
        edges = points[0] + np.arange(cell.size) / scale
        x = np.r_[points, edges, rng.normal(size=2000) * 3, 5e8 + np.arange(20)]
        x = np.r_[x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), np.nan, -np.inf]
        acc = np.zeros((points.size + 1, 2))
        ties = np.zeros(points.size + 1, dtype=np.int64)
        idx = np.empty(x.size, dtype=np.int32)
        cpu._bucket_column(x, points, acc, ties, idx)
        assert acc[:, 0].sum() == x.size - 2  # every finite value, in one bucket
        want = np.r_[np.searchsorted(points, x[:-2], side="right"), -1, -1]
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(acc[:, 0], np.bincount(want[:-2], minlength=acc.shape[0]))
        np.testing.assert_array_equal(ties[1:], [np.sum(x == p) for p in points])


@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_drift_bucket_numbers_in_int16_and_int32_agree(stats_cpu, monkeypatch, path):
    # int16 bucket numbers while every column has at most IDX16_UP_TO points, else int32
    cpu, force = stats_cpu
    force(path)
    rng = np.random.default_rng(13)
    ref = mixed_data(rng, 3000)
    cur = mixed_data(rng, 2500) * np.array([1.1, 1.0, 1.0, 1.0]) + np.array([0.2, 0, 0, 0])
    cur[::89, 0], cur[5, 2], cur[6, 2] = np.nan, np.inf, -np.inf
    summary = ReferenceSummary.fit(ref)
    narrow = drift(summary, cur, backend="cpu")
    monkeypatch.setattr(cpu, "IDX16_UP_TO", 0)
    wide = drift(summary, cur, backend="cpu")
    for k in MEASURES:
        np.testing.assert_array_equal(narrow[k], wide[k], err_msg=k)


@pytest.mark.parametrize("points", [40_000, 70_000])
def test_drift_column_with_more_points_than_int16_holds(points):
    # distinct reference values kept exactly: bucket numbers past int16's range, and
    # with 70,000 index cell counts past uint16's
    rng = np.random.default_rng(14)
    ref = rng.normal(size=points)
    cur = np.r_[rng.normal(0.1, 1.0, size=70_000), np.nan, 9.0, -9.0]
    summary = ReferenceSummary.fit(np.c_[ref, ref[::-1]], max_points=points)
    assert summary.columns[0].points.size == points
    cur2 = np.c_[cur, cur[::-1]]
    got = drift(summary, cur2, backend="cpu")
    want = drift(summary, cur2, backend="reference")
    for k in MEASURES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-300, err_msg=k)
    assert got["ks_statistic"][0] == pytest.approx(
        sps.ks_2samp(ref, cur[np.isfinite(cur)]).statistic, rel=1e-12
    )


def test_ks_pvalue_takes_the_asymptotic_value_when_the_exact_sum_is_costly():
    from kernels.stats.kstest import EXACT_BUDGET

    n1, n2 = 4000, 10_000  # a model's hold-out against the "last 10,000" window
    for d in (0.01, 0.03):
        assert d * n1 * n2 > EXACT_BUDGET
        exact = ks_pvalue(d, n1, n2, method="exact")
        auto = ks_pvalue(d, n1, n2)
        assert auto == ks_pvalue(d, n1, n2, method="asymp")
        assert auto == pytest.approx(sps.kstwo.sf(d, round(n1 * n2 / (n1 + n2))), rel=1e-12)
        assert auto == pytest.approx(exact, rel=0.02)
    # a large shift: both are far below any threshold
    assert ks_pvalue(0.3, n1, n2) < 1e-100 and ks_pvalue(0.3, n1, n2, method="exact") < 1e-100
    # within the budget, SciPy's exact value as before
    d = 0.01
    assert d * 1000 * 3000 <= EXACT_BUDGET
    a, b = np.arange(1000) / 1000, np.arange(3000) / 3000 + 0.01
    assert ks_pvalue(sps.ks_2samp(a, b).statistic, 1000, 3000) == pytest.approx(
        sps.ks_2samp(a, b, method="exact").pvalue, rel=1e-12
    )


def test_drift_columns_claimed_by_threads_give_the_serial_result(stats_cpu):
    # threads claim columns one at a time: any count of columns, each computed whole by
    # one thread, so the results are the serial path's (up to rounding: compiled twice)
    cpu, force = stats_cpu
    rng = np.random.default_rng(15)
    ref = np.c_[mixed_data(rng, 2000), rng.normal(size=2000)]
    cur = np.c_[mixed_data(rng, 3000), rng.normal(0.3, 1.0, size=3000)]
    summary = ReferenceSummary.fit(ref)
    force("serial")
    small = drift(summary, cur, backend="cpu")
    force("parallel")
    for _ in range(3):
        large = drift(summary, cur, backend="cpu")
        for k in MEASURES:
            np.testing.assert_allclose(small[k], large[k], rtol=1e-13, atol=1e-15, err_msg=k)
