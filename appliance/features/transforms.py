"""A view's kernel transforms: parsing their declarations and computing their columns.

Three kinds, each one output column (``name``), each stateless or computed per entity
over event time, so no statistic of later rows leaks into an earlier one:

    {rolling: sum, column: amount, window: 30d, name: spend_30d}   # count|sum|mean|min|max
    {date_part: hour, column: event_time, name: event_hour}         # year|month|day|...
    {encode: hash, column: channel, buckets: 16, name: channel_bucket}   # [seed: 0]
    {encode: ordinal, column: channel, categories: [web, store], name: channel_code}

A rolling window holds the entity's rows with event time in ``(t - window, t]``
(``kernels.transforms.rolling_aggregates``): rows must come sorted by (entity, event
time, created time, sequence). Null values do not count; an empty window gives count
0, sum 0 and null mean/min/max. Date parts and encoders give null for a null input;
an ordinal code is the position in ``categories`` (null for a value not listed), a hash
bucket is stable across machines (``kernels.transforms.hash_buckets``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.durations import format_duration, parse_duration
from appliance.errors import BadInput
from appliance.names import check_name
from kernels.transforms import DATETIME_PARTS, ROLLING_AGGREGATES, datetime_parts, hash_buckets
from kernels.transforms import rolling_aggregates as _rolling

ENCODERS = ("hash", "ordinal")
KINDS = ("rolling", "date_part", "encode")
KEYS = {
    "rolling": {"rolling", "column", "window", "name"},
    "date_part": {"date_part", "column", "name"},
    "hash": {"encode", "column", "buckets", "seed", "name"},
    "ordinal": {"encode", "column", "categories", "name"},
}
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
           "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL", "BOOLEAN")  # fmt: skip


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"{where}: {value!r} is not a whole number from {low} to {high}")
    return value


def parse_transform(d: Any, where: str) -> dict[str, Any]:
    """One transform declaration, checked and normalised (``where`` names it in errors)."""
    if not isinstance(d, dict):
        raise BadInput(f"{where}: expected a mapping like {{rolling: sum, column: amount, "
                       f"window: 30d, name: spend_30d}}, got {type(d).__name__}")  # fmt: skip
    kinds = [k for k in KINDS if k in d]
    if len(kinds) != 1:
        raise BadInput(f"{where}: give exactly one of {', '.join(KINDS)}")
    kind = kinds[0]
    key = d["encode"] if kind == "encode" else kind
    if kind == "encode" and key not in ENCODERS:
        raise BadInput(
            f"{where}: encode: {key!r} is not one of {', '.join(ENCODERS)} "
            "(only stateless encoders: no statistic may leak across time)"
        )
    unknown = sorted(set(d) - KEYS[key])
    if unknown:
        raise BadInput(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS[key]))})"
        )
    for k in ("column", "name"):
        if k not in d:
            raise BadInput(f"{where}: {k} is missing")
    column = d["column"]
    if not isinstance(column, str) or not column.strip() or column.startswith("_"):
        raise BadInput(f"{where}: column: {column!r} is not a column name")
    try:
        name = check_name("feature", d["name"])
    except BadInput as exc:
        raise type(exc)(f"{where}: name: {exc.message}") from None
    out: dict[str, Any] = {"name": name, "column": column}
    if kind == "rolling":
        if d["rolling"] not in ROLLING_AGGREGATES:
            raise BadInput(f"{where}: rolling: {d['rolling']!r} is not one of "
                           f"{', '.join(ROLLING_AGGREGATES)}")  # fmt: skip
        if "window" not in d:
            raise BadInput(f"{where}: window is missing (like 30d)")
        window = parse_duration(d["window"], f"{where}: window")
        if window % timedelta(microseconds=1):
            raise BadInput(f"{where}: window: {d['window']!r} is not a whole number of µs")
        out |= {"rolling": d["rolling"], "window": format_duration(window)}
    elif kind == "date_part":
        if d["date_part"] not in DATETIME_PARTS:
            raise BadInput(f"{where}: date_part: {d['date_part']!r} is not one of "
                           f"{', '.join(DATETIME_PARTS)}")  # fmt: skip
        out["date_part"] = d["date_part"]
    elif key == "hash":
        if "buckets" not in d:
            raise BadInput(f"{where}: buckets is missing (like 16)")
        out |= {"encode": "hash", "buckets": _int(d["buckets"], f"{where}: buckets", 1, 1 << 30),
                "seed": _int(d.get("seed", 0), f"{where}: seed", 0, (1 << 63) - 1)}  # fmt: skip
    else:
        cats = d.get("categories")
        if not isinstance(cats, list) or not cats:
            raise BadInput(f"{where}: categories must be a non-empty list")
        if any(c is None or isinstance(c, dict | list) for c in cats):
            raise BadInput(f"{where}: categories must be plain values (text, numbers)")
        if len({(type(c), c) for c in cats}) != len(cats):
            raise BadInput(f"{where}: categories are listed more than once")
        kinds = {type(c) for c in cats}
        if not (kinds == {str} or kinds == {bool} or kinds <= {int, float}):
            raise BadInput(f"{where}: categories mix kinds of values")
        out |= {"encode": "ordinal", "categories": list(cats)}
    return out


def output_type(t: dict[str, Any]) -> str:
    """The DuckDB type of a transform's output column."""
    if t.get("rolling") in ("sum", "mean", "min", "max"):
        return "DOUBLE"
    return "BIGINT"


def check_input(t: dict[str, Any], dtype: str | None, where: str) -> None:
    """Refuse a transform whose input column's type cannot feed it (None: not known yet)."""
    if dtype is None:
        return
    base = dtype.split("(")[0].upper()
    numeric = base in NUMERIC or base == "DECIMAL"
    if "rolling" in t and t["rolling"] != "count" and not numeric:
        raise BadInput(f"{where}: rolling {t['rolling']} needs a numeric column; "
                       f"{t['column']!r} is {dtype}")  # fmt: skip
    if "date_part" in t and not base.startswith(("TIMESTAMP", "DATE")):
        raise BadInput(f"{where}: date_part needs a timestamp column; {t['column']!r} is {dtype}")
    if t.get("encode") == "ordinal":
        text = base in ("VARCHAR", "TEXT", "STRING")
        for c in t["categories"]:
            if text != isinstance(c, str) or (base == "BOOLEAN") != isinstance(c, bool):
                raise BadInput(f"{where}: category {c!r} cannot be a value of "
                               f"{t['column']!r} ({dtype})")  # fmt: skip


def window(t: dict[str, Any]) -> timedelta | None:
    return parse_duration(t["window"], "window") if "rolling" in t else None


def _entity_codes(entity: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """0, 1, 2, ... per run of equal entities (rows come sorted by entity)."""
    n = len(entity)
    if n == 0:
        return np.zeros(0, np.int64)
    entity = entity.combine_chunks() if isinstance(entity, pa.ChunkedArray) else entity
    change = pc.fill_null(pc.not_equal(entity.slice(1), entity.slice(0, n - 1)), True)
    codes = np.zeros(n, np.int64)
    np.cumsum(change.to_numpy(zero_copy_only=False), out=codes[1:])
    return codes


def _nulls_where(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(values, mask=missing)


def compute(rows: pa.Table, entity: str, transforms: list[dict[str, Any]],
            inputs: dict[str, str]) -> dict[str, pa.Array]:  # fmt: skip
    """Each transform's output column over ``rows`` (sorted by entity, event time,
    created time, sequence); ``inputs`` maps a transform's name to the column of
    ``rows`` holding its input."""
    out: dict[str, pa.Array] = {}
    codes: np.ndarray | None = None
    times = rows.column("_event_time").to_numpy().astype("datetime64[us]")
    for t in transforms:
        col = rows.column(inputs[t["name"]])
        if "rolling" in t:
            if codes is None:
                codes = _entity_codes(rows.column(entity))
            valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
            if t["rolling"] == "count":  # any type: only whether a value is there counts
                values = np.zeros(len(col))
            else:
                values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            values = np.where(valid, values, np.nan)
            span = np.timedelta64(window(t) // timedelta(microseconds=1), "us")
            agg = _rolling(codes, times, values, span)[:, ROLLING_AGGREGATES.index(t["rolling"])]
            agg = np.asarray(agg)
            if t["rolling"] == "count":
                out[t["name"]] = pa.array(agg.astype(np.int64))
            else:
                out[t["name"]] = pa.array(agg, from_pandas=True)  # an empty window: null
        elif "date_part" in t:
            stamps = pc.cast(col, pa.timestamp("us")).to_numpy(zero_copy_only=False)
            parts = np.asarray(datetime_parts(stamps.astype("datetime64[us]")))
            part = parts[:, DATETIME_PARTS.index(t["date_part"])].astype(np.int64)
            out[t["name"]] = _nulls_where(part, np.isnat(stamps))
        elif t["encode"] == "hash":
            values = col.to_numpy(zero_copy_only=False)
            buckets = np.asarray(hash_buckets(values, t["buckets"], t["seed"])).astype(np.int64)
            out[t["name"]] = _nulls_where(buckets, buckets < 0)
        else:
            try:
                codes_ = pc.index_in(col, value_set=pa.array(t["categories"]).cast(col.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BadInput(f"transform {t['name']!r}: categories do not fit column "
                               f"{t['column']!r}: {exc}") from None  # fmt: skip
            out[t["name"]] = pc.cast(codes_, pa.int64())
            if isinstance(out[t["name"]], pa.ChunkedArray):
                out[t["name"]] = out[t["name"]].combine_chunks()
    return out
