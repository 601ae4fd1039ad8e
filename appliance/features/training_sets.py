"""Point-in-time training sets: a spine joined to feature views, each row seeing only
what was known at its time, written to a file and registered with a fingerprint.

    r = app.training_sets.build("labels.parquet", ["loans:income", "loans:age"], actor,
                                out="train.parquet")
    app.training_sets.rebuild(r["id"], actor, "again.parquet")["matches"]  # True

The spine (a Parquet or CSV file, an Arrow table, a pandas or Polars frame) holds each
view's entity column and a timestamp column; every one of its rows, columns, duplicates
and its order is kept, and one column per feature is added (named for the column, or
``VIEW__COL`` with ``full_names``). For each spine row and view the value is the one of
the latest feature row of that entity at or before the spine time (and within the view's
TTL), ties going to the latest created time, then the latest ingest: the contract in
``design.md``, computed by ``appliance.features.pit``.

Feature rows ingested after ``as_of`` are not seen; ``as_of`` defaults to now and is
recorded, so a registered set can be rebuilt byte for byte. The file is published
atomically (a temporary file, fsync, rename), then the set is registered in control.db
with its audit event. A crash between the two leaves a file no record names, which is
harmless: building again registers it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from appliance.auth import Actor, require
from appliance.errors import BadInput, CheckFailed, NotFound
from appliance.features.views import FeatureViews
from appliance.stores import ControlStore, FeatureStore

Progress = Callable[[int, int, str], None]  # (views done, views in all, what is next)

OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
JOIN_ENTITY, JOIN_TIME = "__falaj_entity", "__falaj_time"


# -- parsing what a user gives -----------------------------------------------------------


def parse_time(value: str | datetime, where: str) -> datetime:
    """An ISO 8601 time as a UTC-naive datetime (a time without an offset is UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise BadInput(
                f"{where}: {value!r} is not an ISO 8601 time (like 2024-05-01T12:00:00Z)"
            ) from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def time_text(dt: datetime | None) -> str | None:
    """A UTC-naive time as ISO 8601 with a Z, microseconds kept."""
    return None if dt is None else dt.isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class FeatureRef:
    view: str  # as given: "loans" or "loans@2"
    column: str  # a column, or "*"
    text: str

    @classmethod
    def parse(cls, text: Any, where: str = "features") -> FeatureRef:
        if not isinstance(text, str):
            raise BadInput(f"{where}: {text!r} is not a feature reference (give VIEW:COLUMN)")
        view, sep, column = text.strip().partition(":")
        if not sep or not view.strip() or not column.strip():
            raise BadInput(
                f"{where}: {text!r} is not a feature reference: give VIEW:COLUMN, "
                "VIEW@VERSION:COLUMN or VIEW:*"
            )
        return cls(view.strip(), column.strip(), text.strip())


def parse_features(features: Sequence[str] | str, where: str = "features") -> list[FeatureRef]:
    if isinstance(features, str):
        features = [f for f in features.split(",") if f.strip()]
    if not features:
        raise BadInput(f"{where}: no features given (give VIEW:COLUMN, ...)")
    return [FeatureRef.parse(f, f"{where}[{i}]") for i, f in enumerate(features)]


@dataclass(frozen=True)
class Selected:
    """One feature resolved: its view (a ``View``), column and output name."""

    view: Any
    column: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.view.ref}:{self.column}"


def select_features(
    views: FeatureViews,
    refs: list[FeatureRef],
    actor: Actor,
    full_names: bool,
    taken: dict[str, str] | None = None,
) -> list[Selected]:
    """Resolve each reference to a view version and its columns, named for output;
    ``taken`` maps names already in use (spine columns) to what uses them. A name used
    twice is a ``BadInput`` naming both users."""
    resolved: dict[str, Any] = {}
    out: list[Selected] = []
    owners: dict[str, str] = dict(taken or {})
    for ref in refs:
        if ref.view not in resolved:
            try:
                resolved[ref.view] = views.resolve(ref.view, actor)
            except NotFound as exc:  # a request naming what does not exist: bad input
                raise BadInput(f"feature {ref.text!r}: {exc.message}") from None
        view = resolved[ref.view]
        if ref.column == "*":
            columns = list(view.features)
        elif ref.column in view.features:
            columns = [ref.column]
        else:
            known = ", ".join(view.features) or "none"
            raise BadInput(
                f"feature {ref.text!r}: view {view.ref} has no column {ref.column!r} "
                f"(its columns: {known})"
            )
        for col in columns:
            name = f"{view.name}__{col}" if full_names else col
            user = f"{view.ref}:{col}"
            if name in owners:
                hint = "" if full_names else "; use full names (--full-names) to tell them apart"
                raise BadInput(
                    f"feature {user} would be named {name!r}, which {owners[name]} already is{hint}"
                )
            owners[name] = f"feature {user}"
            out.append(Selected(view, col, name))
    return out


# -- the spine ------------------------------------------------------------------------------


def read_table(source: Any, where: str = "spine") -> tuple[pa.Table, str | None]:
    """A spine as an Arrow table, and the absolute path it was read from (if a file)."""
    if isinstance(source, pa.Table):
        return source, None
    if isinstance(source, pa.RecordBatchReader):
        return source.read_all(), None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise BadInput(f"{where}: {path}: no such file")
        suffix = path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                return pq.read_table(path), str(path.resolve())
            if suffix == ".csv":
                import pyarrow.csv as pacsv

                return pacsv.read_csv(path), str(path.resolve())
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInput(f"{where}: {path}: cannot be read: {str(exc).splitlines()[0]}") from None
        raise BadInput(f"{where}: {path}: unknown file type {suffix!r}; give .parquet or .csv")
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(source, preserve_index=False), None
    if module == "polars":
        return source.to_arrow(), None
    raise BadInput(
        f"{where}: a {type(source).__name__} cannot be read; give a Parquet or CSV file, "
        "an Arrow table, or a pandas or Polars frame"
    )


def _plain_type(t: pa.DataType) -> pa.DataType:
    """The one Arrow type that stands for equal data however it was read."""
    if pa.types.is_large_string(t) or t == pa.string_view():
        return pa.string()
    if pa.types.is_large_binary(t) or t == pa.binary_view():
        return pa.binary()
    return t


class _Hasher:
    """A write-only file that hashes what is written to it."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


def table_sha256(table: pa.Table) -> str:
    """The SHA-256 of a table's content: names, types and values, in order (how it was
    read, chunked or annotated does not count)."""
    schema = pa.schema([pa.field(f.name, _plain_type(f.type)) for f in table.schema])
    table = table.replace_schema_metadata(None)
    if table.schema != schema:
        table = table.cast(schema)
    sink = _Hasher()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as w:
        for batch in table.combine_chunks().to_batches():
            w.write_batch(batch)
    return sink.h.hexdigest()


def spine_times(column: pa.ChunkedArray, name: str) -> pa.Array:
    """A spine's timestamp column as UTC-naive microsecond timestamps."""
    arr = column.combine_chunks()
    t = arr.type
    if pa.types.is_timestamp(t):
        return arr.cast(pa.timestamp("us", t.tz)).cast(pa.timestamp("us"))
    if pa.types.is_date(t):
        return arr.cast(pa.timestamp("us"))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = []
        for i, v in enumerate(arr.to_pylist()):
            out.append(None if v is None else parse_time(v, f"spine: row {i + 1}, column {name!r}"))
        return pa.array(out, pa.timestamp("us"))
    raise BadInput(f"spine: column {name!r} is {t}, not a time (a timestamp, a date, or ISO text)")


def spine_keys(column: pa.ChunkedArray, to: pa.DataType, name: str, view: str) -> pa.Array:
    """A spine's entity column cast to the type of the view's entity column."""
    arr = column.combine_chunks()
    if arr.type == to:
        return arr
    try:
        return arr.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise BadInput(
            f"spine: column {name!r} holds {arr.type} values that are not all {to} "
            f"like the entity column of view {view}"
        ) from None


# -- publishing -------------------------------------------------------------------------------


def write_atomic(table: pa.Table, out: Path) -> str:
    """Write ``table`` to ``out`` (Parquet or CSV by its extension) through a temporary
    file in the same folder, fsynced, then renamed over; the file's SHA-256."""
    fmt = OUTPUT_FORMATS[out.suffix.lower()]
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(table, tmp)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dirfd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _out_path(out: Any) -> Path:
    if out is None:
        raise BadInput("out: give the file to write (.parquet or .csv)")
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise BadInput(f"out: {path}: unknown file type {path.suffix!r}; give .parquet or .csv")
    if not path.parent.is_dir():
        raise BadInput(f"out: {path}: the folder {path.parent} does not exist")
    return path


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class TrainingSets:
    def __init__(self, views: FeatureViews, features: FeatureStore, control: ControlStore) -> None:
        self.views = views
        self.features = features
        self.control = control
        # () -> {purpose: {subject}}: the consent registry's withdrawals (set by Appliance)
        self.withdrawn: Any = None

    def join(
        self,
        spine: Any,
        features: Sequence[str] | str,
        actor: Actor,
        timestamp: str = "event_timestamp",
        as_of: str | datetime | None = None,
        full_names: bool = False,
        created_cutoff: bool = False,
        progress: Progress | None = None,
    ) -> tuple[pa.Table, dict[str, Any]]:
        """The training set as an Arrow table, and what identifies it (fingerprint,
        spine hash, views, resolved features, as-of), without writing or registering."""
        require(actor, "features.build")
        refs = parse_features(features)
        as_of_dt = datetime.now(UTC).replace(tzinfo=None) if as_of is None else (
            parse_time(as_of, "as_of"))  # fmt: skip
        table, source = read_table(spine)
        if not isinstance(timestamp, str) or timestamp not in table.column_names:
            raise BadInput(
                f"spine: no timestamp column {timestamp!r} (its columns: "
                f"{', '.join(table.column_names)}); name it with --timestamp"
            )
        taken = {c: f"the spine column {c!r}" for c in table.column_names}
        selected = select_features(self.views, refs, actor, full_names, taken)
        by_view: dict[str, list[Selected]] = {}
        for s in selected:
            by_view.setdefault(s.view.ref, []).append(s)
        for group in by_view.values():
            view = group[0].view
            if view.entity not in table.column_names:
                raise BadInput(
                    f"spine: no column {view.entity!r}, the entity column of view {view.ref} "
                    f"(the spine's columns: {', '.join(table.column_names)})"
                )
        spine_hash = table_sha256(table)
        table, excluded = self.consented(table, {g[0].view.entity for g in by_view.values()})
        times = spine_times(table.column(timestamp), timestamp)
        from appliance.features.pit import point_in_time_join

        columns: dict[str, pa.ChunkedArray | pa.Array] = {}
        total = len(by_view)
        for done, group in enumerate(by_view.values()):
            view = group[0].view
            if progress is not None:
                progress(done, total, f"joining {view.ref}")
            entities = pc.unique(table.column(view.entity).combine_chunks()).drop_null()
            rows = self.views.feature_rows(view, actor, as_of=as_of_dt, entities=entities)
            keys = spine_keys(
                table.column(view.entity), rows.schema.field(view.entity).type, view.entity,
                view.ref,
            )  # fmt: skip
            joined = point_in_time_join(
                pa.table({JOIN_ENTITY: keys, JOIN_TIME: times}),
                JOIN_ENTITY,
                JOIN_TIME,
                rows,
                view.entity,
                [s.column for s in group],
                ttl=view.ttl,
                names=[s.name for s in group],
                created_cutoff=created_cutoff,
            )
            for s in group:
                columns[s.name] = joined.column(s.name)
        if progress is not None:
            progress(total, total, "done")
        out = table
        for s in selected:  # in the order the features were asked for
            out = out.append_column(s.name, columns[s.name])
        flags = {"full_names": bool(full_names), "created_cutoff": bool(created_cutoff)}
        if excluded:  # spine rows of subjects who withdrew consent for model training
            flags["consent_excluded"] = excluded
        views_used = [{"ref": g[0].view.ref, "fingerprint": g[0].view.fingerprint}
                      for g in by_view.values()]  # fmt: skip
        info = {
            "spine_sha256": spine_hash,
            "spine_source": source,
            "views": views_used,
            "features": [s.ref for s in selected],
            "names": [s.name for s in selected],
            "as_of": time_text(as_of_dt),
            "timestamp_col": timestamp,
            "flags": flags,
        }
        info["fingerprint"] = fingerprint(
            {
                k: info[k]
                for k in ("spine_sha256", "views", "features", "as_of", "timestamp_col", "flags")
            }  # fmt: skip
        )
        return out, info

    def consented(self, table: pa.Table, entities: set[str]) -> tuple[pa.Table, int]:
        """The spine without the rows of subjects who withdrew consent for model
        training (by any of the views' entity columns); how many rows went."""
        withdrawn = (self.withdrawn() if self.withdrawn else {}).get("model-training")
        if not withdrawn:
            return table, 0
        values = pa.array(sorted(withdrawn), pa.string())
        drop = None
        for col in sorted(entities & set(table.column_names)):
            hit = pc.fill_null(pc.is_in(pc.cast(table.column(col), pa.string()), value_set=values),
                               False)  # fmt: skip
            drop = hit if drop is None else pc.or_(drop, hit)
        if drop is None:
            return table, 0
        n = pc.sum(drop).as_py() or 0
        return (table.filter(pc.invert(drop)), n) if n else (table, 0)

    def build(
        self,
        spine: Any,
        features: Sequence[str] | str,
        actor: Actor,
        timestamp: str = "event_timestamp",
        as_of: str | datetime | None = None,
        out: str | os.PathLike | None = None,
        full_names: bool = False,
        created_cutoff: bool = False,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Build a point-in-time training set, write it to ``out`` (Parquet or CSV by
        extension) atomically and register it with one ``features.training_set.build``
        audit event. Returns the record: id, fingerprint, path, sha256, rows, columns,
        the resolved features and views, as-of."""
        require(actor, "features.build")
        path = _out_path(out)
        table, info = self.join(spine, features, actor, timestamp, as_of, full_names,
                                created_cutoff, progress)  # fmt: skip
        sha = write_atomic(table, path)
        record = {
            "id": uuid.uuid4().hex[:16],
            "fingerprint": info["fingerprint"],
            "spine_sha256": info["spine_sha256"],
            "spine_source": info["spine_source"],
            "views": info["views"],
            "features": info["features"],
            "as_of": info["as_of"],
            "timestamp_col": info["timestamp_col"],
            "flags": info["flags"],
            "path": str(path.resolve()),
            "file_sha256": sha,
            "rows": table.num_rows,
            "columns": table.column_names,
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "created_by": str(actor),
        }
        details = {k: record[k] for k in ("fingerprint", "spine_sha256", "views", "features",
                                          "as_of", "path", "file_sha256", "rows")}  # fmt: skip
        if info["flags"].get("consent_excluded"):
            details["consent_excluded"] = info["flags"]["consent_excluded"]
        with self.control.transaction() as tx:
            tx.insert_training_set(record)
            tx.append_audit(actor, "features.training_set.build", record["id"], details)
        return record

    def rebuild(
        self,
        id_: str,
        actor: Actor,
        out: str | os.PathLike,
        spine: Any = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Build a registered set again from its recorded spine (or ``spine``, which must
        hash the same), views, features and as-of into ``out``; ``matches`` says whether
        the file is byte for byte the registered one. Audited."""
        require(actor, "features.build")
        record = self.show(id_, actor)
        path = _out_path(out)
        if spine is None:
            spine = record["spine_source"]
            if spine is None:
                raise BadInput(
                    f"training set {id_}: it was built from an in-memory spine; give it again"
                )
        table, info = self.join(
            spine, record["features"], actor, record["timestamp_col"], record["as_of"],
            record["flags"]["full_names"], record["flags"]["created_cutoff"], progress,
        )  # fmt: skip
        if info["spine_sha256"] != record["spine_sha256"]:
            raise BadInput(
                f"training set {id_}: the spine {spine if isinstance(spine, str) else ''} "
                f"has changed since it was built (sha256 {info['spine_sha256'][:12]}…, "
                f"recorded {record['spine_sha256'][:12]}…)"
            )
        sha = write_atomic(table, path)
        result = {
            "id": id_,
            "path": str(path.resolve()),
            "file_sha256": sha,
            "recorded_sha256": record["file_sha256"],
            "fingerprint": info["fingerprint"],
            "matches": sha == record["file_sha256"]
            and info["fingerprint"] == record["fingerprint"],
            "rows": table.num_rows,
        }
        with self.control.transaction() as tx:
            tx.append_audit(actor, "features.training_set.rebuild", id_,
                            {k: result[k] for k in ("path", "file_sha256", "matches")})  # fmt: skip
        return result

    def list(self, actor: Actor) -> list[dict[str, Any]]:
        """Every registered training set, oldest first."""
        require(actor, "features.read")
        return self.control.training_sets()

    def show(self, id_: str, actor: Actor) -> dict[str, Any]:
        require(actor, "features.read")
        record = self.control.training_set(id_)
        if record is None:
            raise NotFound(f"training set {id_!r}: no such training set (see `falaj features "
                           "training-sets`)")  # fmt: skip
        return record

    def load(self, ref: str, actor: Actor) -> tuple[dict[str, Any], pa.Table]:
        """A registered training set's record and rows, named by its id or its file. The
        file is read once, and refused if it no longer hashes to what was registered."""
        require(actor, "features.read")
        by_file = Path(ref).is_file()
        record = None if by_file else self.show(ref, actor)
        path = Path(ref) if by_file else Path(record["path"])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BadInput(f"training set {ref}: its file {path} is gone; rebuild it with "
                           "`falaj features training-sets ID --rebuild FILE`") from None  # fmt: skip
        sha = hashlib.sha256(data).hexdigest()
        if by_file:
            record = self.control.training_set_by_file(sha)
            if record is None:
                raise BadInput(f"{ref}: not a registered training set (build it with "
                               "`falaj features training-set`)")  # fmt: skip
        elif sha != record["file_sha256"]:
            raise CheckFailed(f"training set {ref}: {path} changed since it was registered "
                              "(SHA-256 differs)")  # fmt: skip
        buf = pa.BufferReader(data)  # the bytes that were hashed, not a second read
        if OUTPUT_FORMATS.get(path.suffix.lower()) == "csv":
            import pyarrow.csv as pacsv

            return record, pacsv.read_csv(buf)
        import pyarrow.parquet as pq

        return record, pq.read_table(buf)

    def find_by_file(self, path: str | os.PathLike, actor: Actor) -> dict[str, Any] | None:
        """The registered training set whose file has the same SHA-256 as ``path`` (the
        latest if several), or None: what a model's lineage names."""
        require(actor, "features.read")
        try:
            sha = file_sha256(path)
        except FileNotFoundError:
            raise BadInput(f"{path}: no such file") from None
        return self.control.training_set_by_file(sha)
