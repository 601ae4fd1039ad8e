"""The point-in-time join: for each spine row, the feature values known at its time.

``point_in_time_join`` is the Arrow-level API the training sets build on. The contract
(``design.md``, issue 7 item 3): for each spine row, the latest feature row of the same
entity with ``_event_time <= spine time`` and, with a TTL, ``_event_time >= spine time -
ttl`` (both edges included); ties on event time go to the latest ``_created_time``, then
the highest ``_seq``; with ``created_cutoff``, rows created after the spine time are not
seen (the backfill-leakage guard). No match gives nulls.

It runs in two steps, which callers may also use apart to keep memory low:
``point_in_time_index`` reads only the key columns (entity, event and created times,
sequence) and gives, per spine row, the index of the feature row it sees (null for none);
``take_features`` gathers feature columns by that index, one column at a time, keeping
their Arrow types and nulls. Both take a ``pq.ParquetFile`` as the feature rows: then each
column is read a row group at a time straight into its final buffer (keys) or gathered
from it (features), so no whole copy of the file's columns is ever held.
"""

from __future__ import annotations

import collections
import datetime
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from appliance.errors import BadInput
from kernels.pit import Gather, asof_index

T = TypeVar("T")

EVENT = "_event_time"
CREATED = "_created_time"
SEQ = "_seq"

_TICKS_PER_US = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise BadInput(
            f"{what} has no column {name!r} (columns: {', '.join(table.column_names) or 'none'})"
        )
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _raw(col: pa.ChunkedArray, view: pa.DataType) -> np.ndarray:
    """The values of a fixed-width column as NumPy ``view`` values, without copying when it
    is one chunk (read-only then); slots under nulls hold anything."""
    if col.num_chunks == 1:
        arr = col.chunk(0)
    elif col.num_chunks == 0:
        arr = pa.array([], col.type)
    else:
        arr = pa.concat_arrays(col.chunks)
    arr = arr.view(view)
    dtype = np.dtype(view.to_pandas_dtype())
    if len(arr) == 0:
        return np.empty(0, dtype)
    offset = arr.offset * dtype.itemsize  # a slice's start, in bytes
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=offset)


def _null_mask(col: pa.ChunkedArray) -> np.ndarray | None:
    return col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None


def _ticks(col: pa.ChunkedArray, what: str, unit: str) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 ticks of ``unit`` ('us' or 'ns') since the epoch, UTC, and the null mask (None
    without nulls; the ticks under it are meaningless). Timestamps of any unit, tz-aware
    (already UTC in Arrow) or naive (taken as UTC), and dates (midnight UTC)."""
    t = col.type
    if pa.types.is_timestamp(t):
        from_unit = t.unit
    elif pa.types.is_date32(t):
        from_unit = "D"
    elif pa.types.is_date64(t):
        from_unit = "ms"
    else:
        raise BadInput(
            f"{what} must hold timestamps or dates, got {t} (cast it, e.g. to timestamp[us])"
        )
    values = _raw(col, pa.int32() if from_unit == "D" else pa.int64())
    if from_unit == "D":
        factor = 86_400_000_000
    elif from_unit == "ns":
        factor = 1
    else:
        factor = _TICKS_PER_US[from_unit]
    if unit == "ns" and from_unit != "ns":
        factor *= 1000
    elif unit == "us" and from_unit == "ns":
        raise AssertionError("nanosecond times are joined in ns")  # _unit_for sees to it
    if factor != 1 or values.dtype != np.int64:
        values = values.astype(np.int64) * factor
    return values, _null_mask(col)


def _entity_codes(
    spine_entity: pa.ChunkedArray,
    spine_name: str,
    row_entity: pa.ChunkedArray,
    rows_name: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense int64 codes for both sides' entities (-1: null, or not among the rows')."""
    st, rt = spine_entity.type, row_entity.type
    if _is_int(st) and _is_int(rt):
        common = pa.int64() if st != rt else st
    elif _is_text(st) and _is_text(rt):
        common = pa.large_string() if st != rt else st
    elif st == rt and not pa.types.is_floating(st):
        common = st
    else:
        raise BadInput(
            f"the spine's entity column {spine_name!r} ({st}) and the feature rows' entity "
            f"column {rows_name!r} ({rt}) cannot be compared: both must hold integers or "
            "both text"
        )
    try:
        spine_entity = spine_entity.cast(common)
        row_entity = row_entity.cast(common)
    except pa.ArrowInvalid as exc:  # uint64 beyond int64
        raise BadInput(
            f"entity columns {spine_name!r} and {rows_name!r} cannot be compared: {exc}"
        ) from None
    if _is_int(common) and not pa.types.is_uint64(common):
        direct = _direct_codes(spine_entity, row_entity)
        if direct is not None:
            return direct
    # one hash pass over the rows; every chunk of the result shares the final dictionary
    encoded = pc.dictionary_encode(row_entity)
    if encoded.num_chunks == 0:
        uniques = pa.array([], common)
        row_code = pa.chunked_array([], pa.int32())
    else:
        uniques = encoded.chunk(0).dictionary
        row_code = pa.chunked_array([c.indices for c in encoded.chunks], pa.int32())
    spine_code = pc.index_in(spine_entity, value_set=uniques)
    return _codes(row_code), _codes(spine_code), len(uniques)


def _direct_codes(
    spine_entity: pa.ChunkedArray, row_entity: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Integer entities in a compact range: code = value - min, no hashing. None when the
    range is too wide for an offsets array of that length."""
    lo_hi = pc.min_max(row_entity)
    lo, hi = lo_hi["min"].as_py(), lo_hi["max"].as_py()
    if lo is None:
        return None
    span = hi - lo + 1
    if span > max(4 * len(row_entity), 1 << 16):
        return None
    dtype = np.int32 if span < 2**31 else np.int64
    row_code = _shifted(row_entity, lo, dtype)
    values = _raw(spine_entity.cast(pa.int64()), pa.int64())
    spine_code = np.subtract(values, lo, dtype=np.int64)
    spine_code[(values < lo) | (values > hi)] = -1
    spine_code = spine_code.astype(dtype, copy=False)
    for codes, col in ((row_code, row_entity), (spine_code, spine_entity)):
        mask = _null_mask(col)
        if mask is not None:
            codes[mask] = -1
    return row_code, spine_code, span


def _shifted(col: pa.ChunkedArray, lo: int, dtype: type) -> np.ndarray:
    """value - lo as ``dtype``, for values known to lie in [lo, lo + span)."""
    values = _raw(col.cast(pa.int64()), pa.int64())
    out = np.empty(len(values), dtype=dtype)
    np.subtract(values, lo, out=out, casting="unsafe")
    return out


def _codes(codes: pa.ChunkedArray) -> np.ndarray:
    """index_in's int32 codes, nulls (absent or null entities) as -1."""
    return np.array(_raw(codes.fill_null(-1), pa.int32()))


def _unit_for(*times: pa.ChunkedArray) -> str:
    """Nanoseconds when any side has them (compared exactly), else microseconds."""
    ns = any(pa.types.is_timestamp(t.type) and t.type.unit == "ns" for t in times)
    return "ns" if ns else "us"


def point_in_time_index(
    spine: pa.Table,
    spine_entity: str,
    spine_time: str,
    rows: pa.Table | pq.ParquetFile,
    rows_entity: str,
    ttl: datetime.timedelta | None = None,
    created_cutoff: bool = False,
) -> pa.Array:
    """An integer array, one per spine row: the index into ``rows`` of the feature row that
    spine row sees, null where none (int32 below 2**31 rows, else int64). ``rows`` needs
    only its entity column, ``_event_time``, ``_created_time`` and ``_seq``: a table, or a
    ``pq.ParquetFile`` of which only those columns are read; see ``point_in_time_join``
    for the rest."""
    if ttl is not None:
        if not isinstance(ttl, datetime.timedelta):
            raise BadInput(f"ttl must be a timedelta or None, got {ttl!r}")
        if ttl < datetime.timedelta(0):
            raise BadInput(f"ttl must not be negative, got {ttl}")
    if isinstance(rows, pq.ParquetFile):
        rows = _read_columns(rows, [rows_entity, EVENT, CREATED, SEQ], "the feature rows")
    s_entity = _column(spine, spine_entity, "the spine")
    s_time = _column(spine, spine_time, "the spine")
    r_entity = _column(rows, rows_entity, "the feature rows")
    r_event = _column(rows, EVENT, "the feature rows")
    r_created = _column(rows, CREATED, "the feature rows")
    unit = _unit_for(s_time, r_event, r_created)
    s_ticks, s_null = _ticks(s_time, f"the spine's time column {spine_time!r}", unit)
    events, e_null = _ticks(r_event, f"the feature rows' {EVENT}", unit)
    created, c_null = _ticks(r_created, f"the feature rows' {CREATED}", unit)
    seq_col = _column(rows, SEQ, "the feature rows")
    if not _is_int(seq_col.type):
        raise BadInput(f"the feature rows' {SEQ} must hold integers, got {seq_col.type}")
    if seq_col.null_count:
        raise BadInput(f"the feature rows' {SEQ} has {seq_col.null_count} null(s)")
    seq = _raw(seq_col.cast(pa.int64()), pa.int64())
    row_code, spine_code, n_entities = _entity_codes(s_entity, spine_entity, r_entity, rows_entity)
    del rows, r_entity  # the entity column, when read here, goes before the kernel runs
    if s_null is not None:
        spine_code[s_null] = -1
    if e_null is not None:
        row_code[e_null] = -1  # a row without an event time is never seen
    if c_null is not None:
        created = np.array(created)
        created[c_null] = np.iinfo(np.int64).min
    # a null _created_time ranks below every time: it loses ties and passes the cutoff
    ttl_ticks = None
    if ttl is not None:
        ttl_ticks = (ttl // datetime.timedelta(microseconds=1)) * (1000 if unit == "ns" else 1)
    index = asof_index(
        spine_code, s_ticks, row_code, events, created, seq, n_entities, ttl_ticks, created_cutoff
    )
    valid = index >= 0
    if valid.all():
        return pa.array(index)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(index.dtype),
        len(index),
        [pa.py_buffer(np.packbits(valid, bitorder="little")), pa.py_buffer(index)],
        null_count=int(len(index) - np.count_nonzero(valid)),
    )


def _read_columns(file: pq.ParquetFile, names: Sequence[str], what: str) -> pa.Table:
    """``names`` of a Parquet file as a table of one-chunk columns. Fixed-width columns are
    read a row group at a time (decoded in parallel) into their final buffers, the row
    group's copy going as the next is read; the others are read whole and made one chunk."""
    schema = file.schema_arrow
    for name in names:
        if name not in schema.names:
            raise BadInput(f"{what} has no column {name!r} (columns: {', '.join(schema.names)})")
    n = file.metadata.num_rows
    fixed = {name: _fixed_width(schema.field(name).type) for name in names}
    fixed = {name: dtype for name, dtype in fixed.items() if dtype is not None}
    values = {name: np.empty(n, dtype) for name, dtype in fixed.items()}
    valid: dict[str, np.ndarray] = {}
    if fixed:
        starts = _group_starts(file)
        read = lambda g: file.read_row_group(g, columns=list(fixed))  # noqa: E731
        groups = range(len(starts) - 1)
        for g, table in zip(groups, _prefetched(read, groups, ahead=1), strict=True):
            for name, dtype in fixed.items():
                at = starts[g]
                for chunk in table.column(name).chunks:
                    stop = at + len(chunk)
                    values[name][at:stop] = _values(chunk, dtype)
                    if chunk.null_count:
                        if name not in valid:
                            valid[name] = np.ones(n, np.bool_)
                        valid[name][at:stop] = _valid(chunk)
                    at = stop
    columns = []
    for name in names:
        if name in fixed:
            columns.append(_arrow(schema.field(name).type, values.pop(name), valid.pop(name, None)))
        else:
            col = file.read(columns=[name]).column(0)
            columns.append(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
    return pa.table(columns, names=list(names))


def _prefetched(
    read: Callable[[T], pa.Table], items: Sequence[T], ahead: int
) -> Iterator[pa.Table]:
    """``read(item)`` for each item, in order, with up to ``ahead`` of the next items read
    in threads while the caller works on this one (Parquet decoding releases the GIL).
    Reads of one ParquetFile must not overlap (it deadlocks): ``ahead`` 1 for those."""
    if not items:
        return
    with ThreadPoolExecutor(ahead, thread_name_prefix="pit-read") as pool:
        pending = collections.deque(pool.submit(read, item) for item in items[:ahead])
        for i in range(len(items)):
            table = pending.popleft().result()
            if i + ahead < len(items):
                pending.append(pool.submit(read, items[i + ahead]))
            yield table
            del table


def _group_starts(file: pq.ParquetFile) -> list[int]:
    """The first row of each row group, and the number of rows at the end."""
    meta = file.metadata
    return [
        0,
        *itertools.accumulate(meta.row_group(g).num_rows for g in range(meta.num_row_groups)),
    ]


def _values(col: pa.Array, dtype: np.dtype) -> np.ndarray:
    """A fixed-width Arrow array's value slots as NumPy ``dtype``, without copying."""
    if len(col) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(col.buffers()[1], dtype, len(col), col.offset * dtype.itemsize)


def _arrow(t: pa.DataType, values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """An Arrow array of type ``t`` over ``values``' memory (not copied) and ``valid``."""
    nulls = 0 if valid is None else len(valid) - int(np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(t, len(values), [bitmap, pa.py_buffer(values)], null_count=nulls)


def _positions(index: pa.Array) -> np.ndarray:
    """The index as NumPy (int32 or int64, as it is), nulls as -1."""
    if index.type not in (pa.int32(), pa.int64()):
        index = index.cast(pa.int64())
    if isinstance(index, pa.ChunkedArray):
        index = index.combine_chunks()
    dtype = np.dtype(index.type.to_pandas_dtype())
    values = _values(index, dtype)
    if not index.null_count:
        return values
    return np.where(_valid(index), values, dtype.type(-1))


def _take_from_parquet(
    file: pq.ParquetFile, index: pa.Array, features: Sequence[str], names: list[str]
) -> pa.Table:
    """take_features over a Parquet file: one column at a time, a row group at a time,
    gathered into that column's final buffer."""
    schema = file.schema_arrow
    missing = [f for f in features if f not in schema.names]
    if missing:
        raise BadInput(
            f"the feature rows have no column {missing[0]!r} (columns: {', '.join(schema.names)})"
        )
    n = len(index)
    fields = [schema.field(f) for f in features]
    dtypes = [_fixed_width(f.type) for f in fields]
    gather = None
    starts = _group_starts(file)
    groups = 0
    if any(d is not None for d in dtypes):
        positions = _positions(index)
        gather = Gather(positions)
        del positions  # the plan holds what the gathers need
        # only the row groups up to the last picked row are read
        while groups < len(starts) - 1 and starts[groups] < gather.n_rows:
            groups += 1
    # the fixed-width columns, a column chunk at a time: the next read in a thread while
    # this one is gathered into its column's buffer (one reader: a ParquetFile is not read
    # from two threads at once)
    tasks = [(j, g) for j, d in enumerate(dtypes) if d is not None for g in range(groups)]
    read = lambda t: file.read_row_group(t[1], columns=[features[t[0]]], use_threads=False)  # noqa: E731
    chunks = zip(tasks, _prefetched(read, tasks, ahead=1), strict=True)
    columns: list[pa.Array | pa.ChunkedArray | None] = [None] * len(fields)
    for j, (field, dtype) in enumerate(zip(fields, dtypes, strict=True)):
        if dtype is None:
            continue
        values, valid = np.zeros(n, dtype), np.zeros(n, np.bool_)
        for _, g in (t for t in tasks if t[0] == j):
            _, table = next(chunks)
            start = starts[g]
            for chunk in table.column(0).chunks:
                if len(chunk):
                    gather.fill(start, _values(chunk, dtype), _valid(chunk), values, valid)
                start += len(chunk)
            del table
        columns[j] = _arrow(field.type, values, valid)
        del values, valid
    if next(chunks, None) is not None:
        raise AssertionError("a column chunk was read and not gathered")
    # the other columns once the reader is done (whole, then Arrow's take)
    for j, field in enumerate(fields):
        if dtypes[j] is None:
            col = file.read(columns=[field.name]).column(0)
            col = col.combine_chunks() if col.num_chunks > 1 else col
            columns[j] = col.take(index)
    return pa.table(columns, names=names)


def take_features(
    rows: pa.Table | pq.ParquetFile | pa.RecordBatchReader | Iterable[pa.RecordBatch],
    index: pa.Array,
    features: Sequence[str],
    names: Sequence[str] | None = None,
) -> pa.Table:
    """The feature columns of ``rows`` picked by ``index`` (from ``point_in_time_index``),
    named ``names`` (default: the features' own), types and nulls kept.

    ``rows`` is a table or a stream of record batches in the same row order as the rows
    the index was built on (e.g. ``pq.ParquetFile(path).iter_batches(columns=...)`` or a
    DuckDB ``fetch_record_batch()``): numeric, temporal and other fixed-width columns are
    filled as the batches pass, so only one batch of them is held at a time; other types
    (text, lists, booleans) are kept until the end and gathered with Arrow's ``take``.
    A ``pq.ParquetFile`` is read one column at a time, a row group at a time (the next
    decoded while this one is gathered), straight into the result's buffers.
    """
    names = _names(features, names)
    if isinstance(rows, pq.ParquetFile):
        return _take_from_parquet(rows, index, features, names)
    if isinstance(rows, pa.Table):
        for feature in features:
            _column(rows, feature, "the feature rows")
        schema = rows.select(list(features)).schema
        batches: Iterable[pa.RecordBatch] = rows.select(list(features)).to_batches()
    else:
        reader = iter(rows)
        first = next(reader, None)
        if first is None:
            schema = getattr(rows, "schema", None)
            if schema is None:
                raise BadInput("the feature rows stream is empty and has no schema")
            batches = []
        else:
            schema = first.schema
            batches = itertools.chain([first], reader)
        missing = [f for f in features if f not in schema.names]
        if missing:
            raise BadInput(
                f"the feature rows have no column {missing[0]!r} (columns: "
                f"{', '.join(schema.names) or 'none'})"
            )
    n = len(index)
    fields = [schema.field(f) for f in features]
    dtypes = [_fixed_width(f.type) for f in fields]
    gather = Gather(_positions(index)) if any(d is not None for d in dtypes) else None
    outs = [None if d is None else (np.zeros(n, d), np.zeros(n, np.bool_)) for d in dtypes]
    kept: list[list[pa.Array]] = [[] for _ in features]
    start = 0
    for batch in batches:
        if gather is not None and start >= gather.n_rows:
            break  # no row from here on is picked
        for j, feature in enumerate(features):
            col = batch.column(feature)
            if outs[j] is None:
                kept[j].append(col)
            elif len(col):
                gather.fill(start, _values(col, dtypes[j]), _valid(col), *outs[j])
        start += batch.num_rows
    columns = []
    for j, field in enumerate(fields):
        if outs[j] is None:
            col = pa.chunked_array(kept[j], field.type)
            col = col.combine_chunks() if col.num_chunks > 1 else col
            taken = col.take(index)
            columns.append(taken)
            continue
        columns.append(_arrow(field.type, *outs[j]))
        outs[j] = None  # the NumPy copies go with the Arrow arrays' buffers
    return pa.table(columns, names=names)


def _fixed_width(t: pa.DataType) -> np.dtype | None:
    """The NumPy dtype whose bytes hold one value of ``t``, for the types gathered in
    place; None for the rest (variable width, bit-packed booleans, dictionaries)."""
    if pa.types.is_floating(t) and t.bit_width in (32, 64):
        return np.dtype(f"float{t.bit_width}")
    if (
        pa.types.is_integer(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_duration(t)
        or pa.types.is_time(t)
    ):
        return np.dtype(f"int{t.bit_width}")
    return None


def _valid(col: pa.Array) -> np.ndarray:
    if col.null_count == 0:
        return np.ones(len(col), np.bool_)
    bits = np.frombuffer(col.buffers()[0], np.uint8)
    return np.unpackbits(bits, bitorder="little")[col.offset : col.offset + len(col)].view(np.bool_)


def _names(features: Sequence[str], names: Sequence[str] | None) -> list[str]:
    if isinstance(features, str):
        raise BadInput(f"features must be a list of column names, got the string {features!r}")
    if names is None:
        names = list(features)
    elif isinstance(names, str) or len(names) != len(features):
        raise BadInput(f"names must be a list as long as features ({len(features)}), got {names!r}")
    seen = set()
    for name in names:
        if name in seen:
            raise BadInput(f"the output column {name!r} is named twice")
        seen.add(name)
    return list(names)


def point_in_time_join(
    spine: pa.Table,
    spine_entity: str,
    spine_time: str,
    rows: pa.Table | pq.ParquetFile,
    rows_entity: str,
    features: list[str],
    ttl: datetime.timedelta | None = None,
    names: list[str] | None = None,
    created_cutoff: bool = False,
) -> pa.Table:
    """The features each spine row sees: one column per feature (named ``names[i]`` or the
    feature's name), one row per spine row, in spine order, Arrow types kept, nulls where
    nothing matches.

    ``rows`` holds one view's feature rows: ``rows_entity``, ``_event_time``,
    ``_created_time`` (timestamps), ``_seq`` (int64, unique) and the feature columns.
    Entities are integers or text on both sides (int against text is a BadInput). The
    spine's time is a timestamp of any unit, tz-aware (compared in UTC) or naive (taken as
    UTC), or a date (midnight UTC). A null spine entity or time matches nothing. The
    caller appends the result's columns to the spine.

    Example::

        feats = point_in_time_join(spine, "customer_id", "event_timestamp", rows,
                                   "customer_id", ["spend"], ttl=timedelta(days=30))
        spine = spine.append_column("spend_30d", feats["spend"])
    """
    _names(features, names)
    if not isinstance(rows, pq.ParquetFile):
        for feature in features:
            _column(rows, feature, "the feature rows")
    index = point_in_time_index(
        spine, spine_entity, spine_time, rows, rows_entity, ttl=ttl, created_cutoff=created_cutoff
    )
    return take_features(rows, index, features, names)
