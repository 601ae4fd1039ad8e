"""The as-of index kernel: the Numba CPU implementation against the brute-force reference,
on generated cases and named edges; the reference itself on hand-worked cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import pit
from kernels.pit import cpu, reference

FEW = settings(max_examples=60, deadline=None)


def both(*args, **kwargs):
    want = pit.asof_index(*args, **kwargs, backend="reference")
    got = pit.asof_index(*args, **kwargs, backend="cpu")
    np.testing.assert_array_equal(got, want)
    return got


@st.composite
def cases(draw):
    n_entities = draw(st.integers(1, 5))
    n_rows = draw(st.integers(0, 60))
    n_spine = draw(st.integers(0, 40))
    span = draw(st.integers(1, 30))  # small spans: many equal event times
    ints = st.integers
    row_code = draw(st.lists(ints(-1, n_entities - 1), min_size=n_rows, max_size=n_rows))
    event = draw(st.lists(ints(0, span), min_size=n_rows, max_size=n_rows))
    created = draw(st.lists(ints(0, 6), min_size=n_rows, max_size=n_rows))
    seq = draw(st.permutations(range(n_rows)))
    spine_code = draw(st.lists(ints(-1, n_entities), min_size=n_spine, max_size=n_spine))
    spine_code = [c if c < n_entities else -1 for c in spine_code]
    spine_time = draw(st.lists(ints(-2, span + 3), min_size=n_spine, max_size=n_spine))
    ttl = draw(st.one_of(st.none(), ints(0, span)))
    cutoff = draw(st.booleans())
    return (spine_code, spine_time, row_code, event, created, list(seq), n_entities), ttl, cutoff


@FEW
@given(cases())
def test_cpu_matches_the_reference(case):
    arrays, ttl, cutoff = case
    both(*arrays, ttl=ttl, created_cutoff=cutoff)


@pytest.mark.parametrize("ttl", [None, 0, 5, 40])
@pytest.mark.parametrize("cutoff", [False, True])
@pytest.mark.parametrize("layout", ["time_order", "shuffled", "reversed"])
def test_large_groups_in_any_order_and_several_chunks(monkeypatch, ttl, cutoff, layout):
    # groups above the insertion-sort size, rows in any order, and the counting sort's
    # parallel path over several chunks (made small here)
    monkeypatch.setattr(cpu, "_MIN_CHUNK", 16)
    rng = np.random.default_rng(3)
    n, n_entities = 600, 4
    row_code = rng.integers(-1, n_entities, n)
    event = rng.integers(0, 200, n)
    created = rng.integers(0, 4, n)
    seq = rng.permutation(n) * 7
    order = {
        "time_order": np.lexsort((seq, created, event)),
        "shuffled": rng.permutation(n),
        "reversed": np.lexsort((seq, created, event))[::-1],
    }[layout]
    rows = row_code[order], event[order], created[order], seq[order]
    spine_code = rng.integers(-1, n_entities, 300)
    spine_time = rng.integers(-5, 210, 300)
    got = both(spine_code, spine_time, *rows, n_entities, ttl=ttl, created_cutoff=cutoff)
    assert (got >= 0).sum() > 50  # the case exercises matches, not only misses


def test_int32_codes_give_the_same_answer():
    rng = np.random.default_rng(5)
    row_code = rng.integers(0, 3, 50)
    args = (rng.integers(-1, 3, 30), rng.integers(0, 60, 30))
    rows = (rng.integers(0, 50, 50), rng.integers(0, 3, 50), np.arange(50))
    wide = pit.asof_index(*args, row_code, *rows, 3)
    narrow = pit.asof_index(args[0].astype(np.int32), args[1], row_code.astype(np.int32), *rows, 3)
    np.testing.assert_array_equal(narrow, wide)


def test_hand_worked_cases():
    # entity 0: rows at t=10 (seq 0), t=20 twice (created 5 seq 1, created 7 seq 2),
    # t=30 created at 40 (seq 3); entity 1: t=5 (seq 4)
    row_code = [0, 0, 0, 0, 1]
    event = [10, 20, 20, 30, 5]
    created = [10, 5, 7, 40, 5]
    seq = [0, 1, 2, 3, 4]
    spine_code = [0, 0, 0, 0, 0, 1, -1, 0]
    spine_time = [9, 10, 25, 30, 35, 100, 100, 19]
    args = (spine_code, spine_time, row_code, event, created, seq, 2)
    assert both(*args).tolist() == [-1, 0, 2, 3, 3, 4, -1, 0]
    # TTL 5: 25 sees 20 (edge 20 >= 20), 35 sees 30 (edge), 100 is 95 past 5
    assert both(*args, ttl=5).tolist() == [-1, 0, 2, 3, 3, -1, -1, -1]
    # TTL 4: one tick past the edges
    assert both(*args, ttl=4).tolist() == [-1, 0, -1, 3, -1, -1, -1, -1]
    # created cutoff: the t=30 row was created at 40, so 30 and 35 see the t=20 tie winner
    assert both(*args, created_cutoff=True).tolist() == [-1, 0, 2, 2, 2, 4, -1, 0]
    # cutoff with a TTL: the row it falls back to may have expired
    assert both(*args, ttl=10, created_cutoff=True).tolist() == [-1, 0, 2, 2, -1, -1, -1, 0]


def test_ties_go_to_created_then_seq():
    # three rows at the same time: created 3 (seq 9), created 3 (seq 4), created 1 (seq 20)
    args = ([0], [5], [0, 0, 0], [5, 5, 5], [3, 3, 1], [9, 4, 20], 1)
    assert both(*args).tolist() == [0]
    assert both([0], [5], [0, 0, 0], [5, 5, 5], [1, 3, 3], [20, 4, 9], 1).tolist() == [2]


def test_empty_inputs():
    assert both([], [], [], [], [], [], 1).tolist() == []
    assert both([0, -1], [3, 4], [], [], [], [], 1).tolist() == [-1, -1]
    assert both([], [], [0], [1], [1], [0], 1).tolist() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spine_code": [0, 5]}, "spine_code must lie in"),
        ({"row_code": [-2]}, "row_code must lie in"),
        ({"spine_time": [1]}, "differ in length"),
        ({"row_seq": [0, 1]}, "differ in length"),
        ({"row_event": [1.5]}, "row_event must hold integers"),
        ({"ttl": -1}, "ttl must be a non-negative"),
        ({"ttl": 1.5}, "ttl must be a non-negative"),
        ({"backend": "gpu"}, "backend='gpu'"),
    ],
)
def test_bad_arguments_are_named(change, message):
    args = {
        "spine_code": [0, 0],
        "spine_time": [1, 2],
        "row_code": [0],
        "row_event": [1],
        "row_created": [1],
        "row_seq": [0],
        "n_entities": 1,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        pit.asof_index(**args)


def test_reference_is_brute_force_over_every_row():
    # the oracle sees rows in any order: shuffling them permutes its answer's indices only
    rng = np.random.default_rng(11)
    n = 40
    rows = [rng.integers(0, 2, n), rng.integers(0, 10, n), rng.integers(0, 3, n), np.arange(n)]
    spine = (rng.integers(0, 2, 20), rng.integers(0, 12, 20))
    first = reference.asof_index(*spine, *rows, 2, -1, False)
    perm = rng.permutation(n)
    second = reference.asof_index(*spine, *(r[perm] for r in rows), 2, -1, False)
    assert [r if r < 0 else int(perm[r]) for r in second] == first.tolist()


@pytest.mark.parametrize("shift", [0, 2, 16])
def test_gather_cpu_matches_the_reference(monkeypatch, shift):
    monkeypatch.setattr(cpu, "_MIN_CHUNK", 8)
    rng = np.random.default_rng(shift)
    n_rows, n_out = 300, 500
    index = np.where(rng.random(n_out) < 0.2, -1, rng.integers(0, n_rows, n_out))
    values = rng.standard_normal(n_rows)
    valid = rng.random(n_rows) < 0.9
    results = []
    for backend in ("reference", "cpu"):
        monkeypatch.setattr(pit.Gather, "SHIFT", shift)
        g = pit.Gather(index, backend=backend)
        out, out_valid = np.zeros(n_out), np.zeros(n_out, np.bool_)
        for start in range(0, n_rows, 37):  # batches that do not line up with buckets
            stop = min(n_rows, start + 37)
            g.fill(start, values[start:stop], valid[start:stop], out, out_valid)
        results.append((out, out_valid))
    (want, want_valid), (got, got_valid) = results
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_valid, want_valid)
    hit = index >= 0
    np.testing.assert_array_equal(want[hit], values[index[hit]])
    np.testing.assert_array_equal(want_valid, np.where(hit, valid[np.maximum(index, 0)], False))


def test_the_cpu_index_is_int32_and_gather_takes_it_as_it_is():
    rng = np.random.default_rng(3)
    index = pit.asof_index([0, 1, 0], [5, 5, 0], [0, 1, 0, 1], [1, 2, 3, 4], [0, 0, 0, 0],
                           [0, 1, 2, 3], 2)  # fmt: skip
    assert index.dtype == np.int32 and index.tolist() == [2, 3, -1]
    picks = np.where(rng.random(40) < 0.3, -1, rng.integers(0, 25, 40))
    values, valid = rng.standard_normal(25), rng.random(25) < 0.8
    results = []
    for dtype in (np.int32, np.int64):
        g = pit.Gather(picks.astype(dtype))
        assert g.rows.dtype == np.int32
        out, out_valid = np.zeros(40), np.zeros(40, np.bool_)
        g.fill(0, values, valid, out, out_valid)
        results.append((out, out_valid))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
