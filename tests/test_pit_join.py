"""The Arrow-level point-in-time join: the contract of design.md on named cases, and
against a brute force over Python objects on generated ones."""

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from appliance.errors import BadInput
from appliance.features.pit import point_in_time_index, point_in_time_join, take_features

US = pa.timestamp("us")
TEXT = pa.string()
T0 = dt.datetime(2024, 3, 1)


def at(days: float = 0, seconds: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, seconds=seconds)


def feature_rows(rows: list[tuple], entity_type=TEXT) -> pa.Table:
    """rows: (entity, event, created, seq, x, y)"""
    cols = list(zip(*rows, strict=True)) if rows else [[]] * 6
    return pa.table(
        {
            "customer": pa.array(cols[0], entity_type),
            "_event_time": pa.array(cols[1], US),
            "_created_time": pa.array(cols[2], US),
            "_seq": pa.array(cols[3], pa.int64()),
            "x": pa.array(cols[4], pa.float64()),
            "y": pa.array(cols[5], pa.string()),
        }
    )


def spine_of(pairs: list[tuple], entity_type=TEXT, time_type=US) -> pa.Table:
    cols = list(zip(*pairs, strict=True)) if pairs else [[], []]
    return pa.table({"id": pa.array(cols[0], entity_type), "ts": pa.array(cols[1], time_type)})


def join(spine, rows, features=("x", "y"), **kwargs):
    out = point_in_time_join(spine, "id", "ts", rows, "customer", list(features), **kwargs)
    return out.to_pydict()


ROW_DATA = [
    ("a", at(1), at(1), 1, 1.0, "a1"),
    ("a", at(5), at(5), 2, None, "a5"),  # a null feature value
    ("a", at(9), at(9), 3, 9.0, None),
    ("b", at(2), at(2), 4, 2.0, "b2"),
]
ROWS = feature_rows(ROW_DATA)


def test_latest_row_at_or_before_the_spine_time():
    spine = spine_of([("a", at(1)), ("a", at(4)), ("a", at(5)), ("a", at(100)), ("b", at(3))])
    assert join(spine, ROWS) == {
        "x": [1.0, 1.0, None, 9.0, 2.0],  # exact time matches; a5's null stays null
        "y": ["a1", "a1", "a5", None, "b2"],
    }


def test_before_the_first_row_unknown_and_null_entities_get_nulls():
    spine = spine_of([("a", at(0.5)), ("zzz", at(50)), (None, at(50)), ("a", None)])
    assert join(spine, ROWS) == {"x": [None] * 4, "y": [None] * 4}


def test_ttl_edges_are_included_and_one_second_past_them_is_not():
    ttl = dt.timedelta(days=2)
    spine = spine_of(
        [
            ("a", at(3)),  # a1 is exactly 2 days old: seen
            ("a", at(3, 1)),  # one second past: expired
            ("a", at(5)),  # exact event time, age 0
            ("b", at(4)),
            ("b", at(4, 1)),
        ]
    )
    assert join(spine, ROWS, ["y"], ttl=ttl) == {"y": ["a1", None, "a5", "b2", None]}
    assert join(spine, ROWS, ["y"], ttl=dt.timedelta(0)) == {"y": [None, None, "a5", None, None]}


def test_spine_order_duplicates_and_names_are_kept():
    spine = spine_of([("b", at(9)), ("a", at(6)), ("b", at(9)), ("a", at(2)), ("a", at(6))])
    out = point_in_time_join(spine, "id", "ts", ROWS, "customer", ["y", "x"], names=["why", "ex"])
    assert out.column_names == ["why", "ex"]
    assert out.to_pydict() == {
        "why": ["b2", "a5", "b2", "a1", "a5"],
        "ex": [2.0, None, 2.0, 1.0, None],
    }


def test_equal_event_times_go_to_the_latest_created_then_the_highest_seq():
    rows = feature_rows(
        [
            ("a", at(1), at(3), 10, 1.0, "created 3, seq 10"),
            ("a", at(1), at(4), 5, 2.0, "created 4, seq 5"),  # latest created wins
            ("a", at(1), at(4), 2, 3.0, "created 4, seq 2"),
            ("b", at(1), at(2), 7, 4.0, "seq 7"),
            ("b", at(1), at(2), 8, 5.0, "seq 8"),  # same created: highest seq
            ("b", at(1), at(2), 6, 6.0, "seq 6"),
        ]
    )
    spine = spine_of([("a", at(2)), ("b", at(2))])
    assert join(spine, rows, ["y"]) == {"y": ["created 4, seq 5", "seq 8"]}
    # the input order of the rows does not matter
    assert join(spine, rows.take([5, 4, 3, 2, 1, 0]), ["y"]) == {"y": ["created 4, seq 5", "seq 8"]}


def test_created_cutoff_hides_rows_created_after_the_spine_time():
    rows = feature_rows(
        [
            ("a", at(1), at(1), 1, 1.0, "on time"),
            ("a", at(2), at(10), 2, 2.0, "backfilled at day 10"),
        ]
    )
    spine = spine_of([("a", at(3)), ("a", at(10)), ("a", at(0.5))])
    assert join(spine, rows, ["y"]) == {"y": ["backfilled at day 10"] * 2 + [None]}
    assert join(spine, rows, ["y"], created_cutoff=True) == {
        "y": ["on time", "backfilled at day 10", None]
    }
    # with a TTL, the row the cutoff falls back to may have expired
    assert join(spine, rows, ["y"], created_cutoff=True, ttl=dt.timedelta(days=1)) == {
        "y": [None, None, None]
    }


@pytest.mark.parametrize(
    ("spine_type", "rows_type"),
    [
        (pa.int64(), pa.int64()),
        (pa.int32(), pa.int64()),
        (pa.uint16(), pa.int8()),
        (pa.uint64(), pa.uint64()),
        (pa.large_string(), pa.string()),
        (pa.dictionary(pa.int8(), pa.string()), pa.string()),
    ],
)
def test_integer_and_text_entities(spine_type, rows_type):
    text = pa.types.is_string(rows_type)
    key = {"a": "a", "b": "b"} if text else {"a": 3, "b": 7}
    rows = feature_rows([(key[e], *rest) for e, *rest in ROW_DATA], rows_type)
    missing = "zz" if text else 5
    spine_pairs = [(key["b"], at(3)), (missing, at(3)), (key["a"], at(5)), (None, at(5))]
    if pa.types.is_dictionary(spine_type):
        spine = spine_of(spine_pairs, pa.string())
        spine = spine.set_column(0, "id", spine["id"].dictionary_encode())
    else:
        spine = spine_of(spine_pairs, spine_type)
    assert join(spine, rows, ["y"]) == {"y": ["b2", None, "a5", None]}


def test_sparse_integer_entities_take_the_hashing_path():
    # ids far apart: too wide a range for offset codes
    far = [1, 10**15, -(10**12)]
    rows = feature_rows(
        [(e, at(i), at(i), i, float(i), str(e)) for i, e in enumerate(far)], pa.int64()
    )
    spine = spine_of([(10**15, at(5)), (-(10**12), at(5)), (2, at(5)), (1, at(5))], pa.int64())
    assert join(spine, rows, ["y"]) == {"y": [str(10**15), str(-(10**12)), None, "1"]}


def test_int_against_text_entities_is_bad_input_naming_both_columns():
    spine = spine_of([(1, at(3))], pa.int64())
    with pytest.raises(BadInput, match=r"'id' \(int64\).*'customer' \(string\)"):
        join(spine, ROWS)


@pytest.mark.parametrize(
    "time_type", [pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("ns")]
)
def test_any_timestamp_unit(time_type):
    spine = spine_of([("a", at(5)), ("a", at(5) - dt.timedelta(seconds=1))], time_type=time_type)
    assert join(spine, ROWS, ["y"]) == {"y": ["a5", "a1"]}


def test_nanosecond_spine_times_compare_exactly():
    # 1 ns before a row's time does not see it; a TTL edge holds to the nanosecond
    t5 = int(at(5).replace(tzinfo=dt.UTC).timestamp()) * 10**9
    spine = pa.table(
        {"id": ["a", "a", "a"], "ts": pa.array([t5 - 1, t5, t5 + 1], pa.timestamp("ns"))}
    )
    assert join(spine, ROWS, ["y"]) == {"y": ["a1", "a5", "a5"]}
    ttl = dt.timedelta(days=4)  # a1 at day 1 expires at day 5 + 0 ns
    assert join(spine, ROWS, ["y"], ttl=ttl) == {"y": ["a1", "a5", "a5"]}
    assert join(spine.slice(2), ROWS, ["y"], ttl=dt.timedelta(0)) == {"y": [None]}


def test_tz_aware_spine_times_are_compared_in_utc():
    riyadh = ZoneInfo("Asia/Riyadh")  # UTC+3
    local = at(5).replace(tzinfo=dt.UTC).astimezone(riyadh)  # 03:00 local, day 5 00:00 UTC
    spine = pa.table(
        {
            "id": ["a", "a"],
            "ts": pa.array(
                [local, local - dt.timedelta(microseconds=1)], pa.timestamp("us", tz="Asia/Riyadh")
            ),
        }
    )
    assert join(spine, ROWS, ["y"]) == {"y": ["a5", "a1"]}


def test_date_spine_times_mean_midnight_utc():
    spine = pa.table({"id": ["a", "a"], "ts": pa.array([dt.date(2024, 3, 6), dt.date(2024, 3, 5)])})
    # at(5) is 2024-03-06 00:00: seen at that date's midnight; the day before sees a1
    assert join(spine, ROWS, ["y"]) == {"y": ["a5", "a1"]}


def test_empty_spine_and_empty_rows():
    empty_spine = spine_of([])
    out = point_in_time_join(empty_spine, "id", "ts", ROWS, "customer", ["x", "y"])
    assert out.num_rows == 0 and out.schema.types == [pa.float64(), pa.string()]
    spine = spine_of([("a", at(3)), ("b", at(3))])
    out = point_in_time_join(spine, "id", "ts", feature_rows([]), "customer", ["x", "y"])
    assert out.to_pydict() == {"x": [None, None], "y": [None, None]}
    assert out.schema.types == [pa.float64(), pa.string()]


def test_feature_types_are_kept():
    rows = ROWS.append_column("when", pa.array([at(i) for i in range(4)], US))
    rows = rows.append_column("n", pa.array([1, 2, None, 4], pa.int16()))
    spine = spine_of([("a", at(6)), ("q", at(6))])
    out = point_in_time_join(spine, "id", "ts", rows, "customer", ["when", "n"])
    assert out.schema.types == [US, pa.int16()]
    assert out.to_pydict() == {"when": [at(1), None], "n": [2, None]}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, r: join(s.rename_columns(["id", "t2"]), r), "the spine has no column 'ts'"),
        (lambda s, r: join(s, r, ["x", "nope"]), "the feature rows have no column 'nope'|no column 'nope'"),
        (lambda s, r: join(s, r.drop_columns(["_seq"])), "no column '_seq'"),
        (lambda s, r: join(s.set_column(1, "ts", pa.array(["2024-03-01"])), r),
         "spine's time column 'ts' must hold timestamps or dates, got string"),
        (lambda s, r: join(s.set_column(1, "ts", pa.array([1.5])), r),
         "spine's time column 'ts' must hold timestamps or dates, got double"),
        (lambda s, r: join(s, r.set_column(1, "_event_time", pa.array([1, 2, 3, 4]))),
         "_event_time must hold timestamps"),
        (lambda s, r: join(s, r, ttl=dt.timedelta(days=-1)), "ttl must not be negative"),
        (lambda s, r: join(s, r, ttl=30), "ttl must be a timedelta"),
        (lambda s, r: join(s, r, names=["only one"]), "names must be a list as long as features"),
        (lambda s, r: join(s, r, names=["same", "same"]), "'same' is named twice"),
        (lambda s, r: point_in_time_join(s, "id", "ts", r, "customer", "x"), "features must be a list"),
        (lambda s, r: join(s.set_column(0, "id", pa.array([1.5])), r), "cannot be compared"),
    ],
)  # fmt: skip
def test_bad_input_names_what_and_where(call, message):
    spine = spine_of([("a", at(3))])
    with pytest.raises(BadInput, match=message):
        call(spine, ROWS)


def test_index_and_take_apart_give_the_join():
    spine = spine_of([("a", at(6)), ("b", at(1)), ("b", at(3))])
    index = point_in_time_index(spine, "id", "ts", ROWS.select(["customer", "_event_time",
                                "_created_time", "_seq"]), "customer")  # fmt: skip
    assert index.to_pylist() == [1, None, 3]
    assert take_features(ROWS, index, ["y"], ["why"]).to_pydict() == {"why": ["a5", None, "b2"]}


# -- generated cases against a brute force over Python objects ----------------------


def brute_force(spine, rows, ttl, cutoff):
    out = []
    for entity, t in spine:
        seen = [
            r
            for r in rows
            if entity is not None
            and t is not None
            and r[0] == entity
            and r[1] <= t
            and (ttl is None or r[1] >= t - ttl)
            and (not cutoff or r[2] <= t)
        ]
        best = max(seen, key=lambda r: (r[1], r[2], r[3]), default=None)
        out.append(None if best is None else best[5])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_generated_cases_match_a_brute_force(seed):
    rnd = random.Random(seed)
    entities = ["e1", "e2", "e3", "e4"] if seed % 2 else [10, 20, 30, 40]
    etype = pa.string() if seed % 2 else pa.int64()
    day = lambda: at(rnd.randint(0, 12), rnd.choice([0, 0, 1, 3600]))  # noqa: E731
    rows = []
    for seq in rnd.sample(range(1000), rnd.randint(0, 40)):
        event = day()
        created = event + dt.timedelta(days=rnd.choice([0, 0, 1, 5]))
        rows.append((rnd.choice(entities[:3]), event, created, seq, None, f"row {seq}"))
    spine = [(rnd.choice(entities + [None]), day() if rnd.random() > 0.05 else None)
             for _ in range(rnd.randint(0, 30))]  # fmt: skip
    ttl = rnd.choice([None, dt.timedelta(0), dt.timedelta(days=2), dt.timedelta(seconds=3600)])
    cutoff = rnd.random() < 0.5
    got = join(spine_of(spine, etype), feature_rows(rows, etype), ["y"], ttl=ttl,
               created_cutoff=cutoff)  # fmt: skip
    assert got["y"] == brute_force(spine, rows, ttl, cutoff)


# -- gathering features from streamed batches ------------------------------------


def typed_rows(n: int) -> pa.Table:
    rnd = random.Random(n)
    maybe = lambda v: None if rnd.random() < 0.2 else v  # noqa: E731
    return pa.table(
        {
            "f64": pa.array([maybe(i + 0.5) for i in range(n)], pa.float64()),
            "f32": pa.array([maybe(float(i)) for i in range(n)], pa.float32()),
            "i8": pa.array([maybe(i % 100) for i in range(n)], pa.int8()),
            "u64": pa.array([maybe(2**63 + i) for i in range(n)], pa.uint64()),
            "when": pa.array([maybe(at(i)) for i in range(n)], pa.timestamp("ms", tz="UTC")),
            "day": pa.array([maybe(dt.date(2024, 1, 1) + dt.timedelta(i)) for i in range(n)]),
            "flag": pa.array([maybe(i % 3 == 0) for i in range(n)], pa.bool_()),
            "text": pa.array([maybe(f"t{i}") for i in range(n)], pa.string()),
            "items": pa.array([maybe([i, i + 1]) for i in range(n)], pa.list_(pa.int32())),
            "kind": pa.array([maybe(f"k{i % 4}") for i in range(n)]).dictionary_encode(),
        }
    )


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
@pytest.mark.parametrize("as_stream", [False, True])
def test_take_features_keeps_every_type_from_tables_and_streams(monkeypatch, chunk, as_stream):
    from kernels.pit import Gather

    monkeypatch.setattr(Gather, "SHIFT", 3)  # buckets of 8 rows: batches span several
    rows = typed_rows(100)
    rnd = random.Random(chunk or 0)
    picks = [None if rnd.random() < 0.2 else rnd.randrange(100) for _ in range(150)]
    index = pa.array(picks, pa.int64())
    source = pa.Table.from_batches(rows.to_batches(max_chunksize=chunk)) if chunk else rows
    if as_stream:
        source = pa.RecordBatchReader.from_batches(rows.schema, source.to_batches())
    out = take_features(source, index, rows.column_names)
    assert out.schema == rows.schema
    for name in rows.column_names:
        column = rows[name].to_pylist()
        want = [None if p is None else column[p] for p in picks]
        assert out[name].to_pylist() == want, name


def test_take_features_from_an_empty_stream_and_a_missing_column():
    schema = pa.schema([("x", pa.float64())])
    empty = pa.RecordBatchReader.from_batches(schema, [])
    out = take_features(empty, pa.array([None, None], pa.int64()), ["x"])
    assert out.to_pydict() == {"x": [None, None]}
    with pytest.raises(BadInput, match="no column 'nope'"):
        take_features(pa.RecordBatchReader.from_batches(schema, []), pa.array([0]), ["nope"])
    with pytest.raises(BadInput, match="no column 'nope'"):
        take_features(iter([pa.record_batch({"x": [1.0]})]), pa.array([0]), ["nope"])


def test_sliced_tables_and_nanosecond_rows():
    # Arrow slices start inside their buffers: values are read from the slice's offset
    spine = spine_of([("zz", at(0)), ("b", at(1)), ("a", at(6)), ("b", at(3)), ("a", at(2))])
    rows = pa.concat_tables([feature_rows([("q", at(0), at(0), 99, 0.0, "q")]), ROWS])
    got = join(spine.slice(2), rows.slice(1), ["y"])
    assert got == {"y": ["a5", "b2", "a1"]}
    ns = pa.timestamp("ns")
    rows_ns = ROWS.set_column(1, "_event_time", ROWS["_event_time"].cast(ns))
    rows_ns = rows_ns.set_column(2, "_created_time", rows_ns["_created_time"].cast(ns))
    assert join(spine.slice(2), rows_ns, ["y"]) == {"y": ["a5", "b2", "a1"]}


# -- a Parquet file as the feature rows -------------------------------------------


@pytest.mark.parametrize("group", [1, 7, 64, 1000])
def test_a_parquet_file_joins_like_its_table(tmp_path, monkeypatch, group):
    # keys and features read a row group at a time must give the table's index and cells,
    # with nulls in the keys (a null created time, a null event time) and every type
    import pyarrow.parquet as pq

    from kernels.pit import Gather

    monkeypatch.setattr(Gather, "SHIFT", 3)  # buckets of 8 rows: row groups span several
    rnd = random.Random(group)
    maybe = lambda v, p: None if rnd.random() < p else v  # noqa: E731
    n = 100
    typed = typed_rows(n)
    keys = {
        "customer": pa.array([maybe(rnd.choice("abc"), 0.05) for _ in range(n)]),
        "_event_time": pa.array([maybe(at(rnd.randint(0, 9)), 0.05) for _ in range(n)], US),
        "_created_time": pa.array([maybe(at(rnd.randint(0, 12)), 0.1) for _ in range(n)], US),
        "_seq": pa.array(rnd.sample(range(1000), n), pa.int64()),
    }
    rows = pa.table({**keys, **{name: typed[name] for name in typed.column_names}})
    pq.write_table(rows, tmp_path / "rows.parquet", row_group_size=group)
    file = pq.ParquetFile(tmp_path / "rows.parquet")
    spine = spine_of([(rnd.choice(["a", "b", "c", "d", None]), at(rnd.randint(0, 12)))
                      for _ in range(150)])  # fmt: skip
    for ttl, cutoff in ((None, False), (dt.timedelta(days=2), True)):
        kwargs = {"ttl": ttl, "created_cutoff": cutoff}
        want = point_in_time_index(spine, "id", "ts", rows, "customer", **kwargs)
        got = point_in_time_index(spine, "id", "ts", file, "customer", **kwargs)
        assert got.equals(want)
        assert got.null_count < len(got)  # the case exercises matches, not only misses
        out = take_features(file, got, typed.column_names)
        assert out.schema == typed.schema
        assert out.equals(take_features(rows, got, typed.column_names))
        joined = point_in_time_join(spine, "id", "ts", file, "customer", ["text", "f64"],
                                    names=["a", "b"], **kwargs)  # fmt: skip
        assert joined.to_pydict() == {"a": out["text"].to_pylist(), "b": out["f64"].to_pylist()}
    # picks only among the first rows: the later row groups are not needed
    early = pa.array([3, None, 0, 3], pa.int32())
    assert take_features(file, early, ["f64"]).equals(take_features(rows, early, ["f64"]))
    with pytest.raises(BadInput, match="no column 'nope'"):
        take_features(file, early, ["nope"])
    with pytest.raises(BadInput, match="no column 'nope'"):
        point_in_time_index(spine, "id", "ts", file, "nope")


def test_the_index_is_int32_below_two_to_the_31_rows():
    spine = spine_of([("a", at(6)), ("zz", at(6))])
    index = point_in_time_index(spine, "id", "ts", ROWS, "customer")
    assert index.type == pa.int32() and index.to_pylist() == [1, None]
