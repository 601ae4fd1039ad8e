"""ColumnSummary and CategorySummary: values, merging and JSON state."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kernels.summary import CategorySummary, ColumnSummary


@pytest.mark.parametrize("backend", ["reference", "cpu", "cuda"])
def test_column_summary_values(backend):
    X = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan], [-2.0, np.nan]])
    s = ColumnSummary.from_array(X, backend=backend)
    assert s.count.tolist() == [3, 0] and s.nan_count.tolist() == [1, 4]
    assert s.sum.tolist() == [2.0, 0.0] and s.m2[1] == 0.0
    np.testing.assert_allclose(s.m2[0], np.var([1.0, 3.0, -2.0]) * 3, rtol=1e-15)
    assert s.min[0] == -2.0 and s.max[0] == 3.0 and np.isnan(s.min[1]) and np.isnan(s.max[1])
    assert s.n_rows == 4 and np.isnan(s.mean[1])


@settings(max_examples=25, deadline=None)
@given(
    X=hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 30), st.integers(1, 3)),
        elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan)),
    ),
    cuts=st.lists(st.integers(0, 30), min_size=2, max_size=2),
)
def test_merge_of_three_partitions_equals_the_whole(X, cuts):
    a, b = sorted(min(c, len(X)) for c in cuts)
    parts = [ColumnSummary.from_array(p, backend="cpu") for p in (X[:a], X[a:b], X[b:])]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    whole = ColumnSummary.from_array(X, backend="reference")
    assert merged.count.tolist() == whole.count.tolist()
    assert merged.nan_count.tolist() == whole.nan_count.tolist()
    np.testing.assert_array_equal(merged.min, whole.min)
    np.testing.assert_array_equal(merged.max, whole.max)
    big = 1e6 * max(len(X), 1)
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12, atol=1e-12 * big)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-9, atol=1e-12 * big * big)


def test_column_summary_json_and_width_mismatch():
    s = ColumnSummary.from_array(np.array([[1.0, np.nan]]))
    again = ColumnSummary.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(again.min, s.min)
    assert again.count.tolist() == [1, 0]
    with pytest.raises(ValueError, match="1 columns vs 2"):
        ColumnSummary.from_array(np.ones((2, 1))).merge(s)


@pytest.mark.parametrize("backend", ["reference", "cpu", "cuda"])
def test_category_summary_merge(backend):
    a = CategorySummary.from_values(np.array([3, 1, 3]), [1.0, 2.0, 3.0], backend=backend)
    b = CategorySummary.from_values(np.array([1.0, np.nan, 9.0]), [0.5, 7.0, 1.0], backend=backend)
    m = a.merge(b)
    assert m.categories.tolist() == [1, 3, 9] and m.counts.tolist() == [2, 2, 1]
    assert m.target_sum.tolist() == [2.5, 4.0, 1.0] and m.n_missing == 1
    again = CategorySummary.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.categories.tolist() == [1.0, 3.0, 9.0] and again.counts.tolist() == [2, 2, 1]
    with pytest.raises(ValueError, match="only one side has target sums"):
        a.merge(CategorySummary.from_values(np.array([1])))


def test_category_summary_of_text():
    s = CategorySummary.from_values(np.array(["b", "a", None, "b"], dtype=object))
    t = s.merge(CategorySummary.from_values(np.array(["c"])))
    assert t.categories.tolist() == ["a", "b", "c"] and t.counts.tolist() == [1, 2, 1]
    again = CategorySummary.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again.categories.tolist() == ["a", "b", "c"]
