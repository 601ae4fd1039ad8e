"""Standard inference protocols over the same ``Appliance.predict``, so existing
clients work unchanged:

- the Open Inference Protocol (KServe V2 REST): ``/v2``, ``/v2/health/{live,ready}``,
  ``/v2/models/NAME[/versions/V]``, ``.../ready`` and ``.../infer``;
- MLflow's scoring server: ``/invocations`` (``dataframe_split``, ``dataframe_records``,
  ``instances``, ``inputs``, or CSV), ``/ping`` and ``/health``. MLflow serves one model
  per server; here ``/models/NAME/invocations`` names it, and ``/invocations`` takes the
  only deployment (or ``?model=NAME`` when there are several).
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

import appliance as appliance_pkg
from appliance.errors import BadInput, NotDeployed
from webui.api import appliance, json_body, request_actor, request_key
from webui.auth import needs
from webui.metrics import scored

bp = Blueprint("protocols", __name__)

OUTPUT = "probability"


# -- Open Inference Protocol (KServe V2) -------------------------------------
#
# The tensor logic below is shared with the gRPC service (webui/grpc_server.py): a
# request's inputs become ``(name, shape, values)`` triples, whatever carried them (JSON
# arrays, the binary tensor data extension, gRPC contents or raw bytes), and then one
# function turns them into records for ``serving.predict``.

# The element type of each binary (raw) tensor: little-endian, as the protocol says.
DTYPES = {"BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
          "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
          "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}  # fmt: skip
TYPES = frozenset(DTYPES) | {"BYTES"}  # BYTES: numbers written as text, e.g. b"1.5"
OUTPUT_DATATYPE = "FP64"
PLATFORMS = {"linear": "falaj-linear", "gbt": "falaj-lightgbm", "mlp": "falaj-mlp"}

Tensor = tuple[str, list[int], list]


def live_model(server, name: str, version: str | None):
    """The live model of deployment ``name``; 404 when ``version`` is given and is not
    the live one."""
    model = server.get(name).live
    if version and version != str(model.version):
        raise NotDeployed(
            f"model {name!r} version {version} is not live (the live version is {model.version})"
        )
    return model


def model_metadata(name: str, model) -> dict:
    return {
        "name": name,
        "versions": [str(model.version)],
        "platform": PLATFORMS.get(model.estimator.family, "falaj"),
        # numbers travel as FP64; categories and date-times (ISO-8601) as BYTES text
        "inputs": [
            {"name": i.name, "datatype": "FP64" if i.type == "double" else "BYTES", "shape": [-1]}
            for i in model.inputs
        ],  # fmt: skip
        "outputs": [{"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [-1]}],
    }


def check_datatype(datatype, where: str) -> str:
    if not isinstance(datatype, str):  # a list or object cannot even be looked up
        raise BadInput(
            f"{where}.datatype: expected a string naming a tensor type, got {json.dumps(datatype)}"
        )
    if datatype not in TYPES:
        raise BadInput(
            f"{where}.datatype: {datatype!r} is not a numeric type or BYTES ({', '.join(sorted(TYPES))})"
        )
    return datatype


def check_shape(shape, where: str) -> list[int]:
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise BadInput(f"{where}.shape: expected a list of non-negative integers")
    return shape


def _text(value, where: str):
    """A BYTES element as text (a categorical or date-time input's value)."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            raise BadInput(f"{where}: a BYTES element is not UTF-8 text") from None
    return value


def _text_number(value, where: str):
    """A BYTES element (text) given for a numeric input, as a number; bad text is a 400
    naming the tensor."""
    if not isinstance(value, str):
        return value  # a number given as such: predict checks it like any other
    shown = value if len(value) <= 40 else value[:40] + "…"
    try:
        return float(value)
    except ValueError:
        raise BadInput(f"{where}: text {shown!r} is not a number") from None


def decode_raw(datatype: str, raw: bytes | memoryview, count: int, where: str) -> list:
    """The values of a binary tensor of ``count`` elements: row-major, little-endian;
    BYTES elements each prefixed by their length (4 bytes, little-endian)."""
    if datatype == "BYTES":
        values, pos, raw = [], 0, memoryview(raw)
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise BadInput(f"{where}: BYTES data ends inside an element's length prefix")
            size = int.from_bytes(raw[pos : pos + 4], "little")
            if pos + 4 + size > len(raw):
                raise BadInput(f"{where}: BYTES element {len(values)} runs past the data")
            values.append(_text(raw[pos + 4 : pos + 4 + size], where))
            pos += 4 + size
        if len(values) != count:
            raise BadInput(
                f"{where}: shape needs {count} BYTES elements, the data holds {len(values)}"
            )
        return values
    dtype = np.dtype(DTYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise BadInput(
            f"{where}: shape needs {count} {datatype} elements ({count * dtype.itemsize} bytes), "
            f"got {len(raw)} bytes"
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        return array.astype(np.int8).tolist()
    return array.tolist()


def tensor(name, shape, datatype: str, values: list, where: str) -> Tensor:
    """Checks a decoded tensor: its element count matches its shape."""
    if len(values) != math.prod(shape):
        raise BadInput(
            f"{where} ({name}): shape {shape} needs {math.prod(shape)} values, got {len(values)}"
        )
    if datatype == "BYTES":
        values = [_text(v, where) for v in values]
    elif datatype == "BOOL":
        values = [int(v) if isinstance(v, bool) else v for v in values]
    return name, shape, values


def _flatten(data, where: str) -> list:
    if not isinstance(data, list):
        raise BadInput(f"{where}.data: expected an array")
    flat: list = []
    stack = [data]
    while stack:  # row-major flattening of nested arrays, without recursion limits
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


class _Binary:
    """The binary tensor data after the JSON header, handed out in input order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, size, where: str) -> memoryview:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadInput(f"{where}.parameters.binary_data_size: expected a non-negative integer")
        if self.pos + size > len(self.data):
            raise BadInput(
                f"{where}: binary_data_size {size} runs past the binary data "
                f"({len(self.data) - self.pos} bytes left)"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{where}.parameters: expected an object, got {json.dumps(value)}")
    return value


def _tensor(t, i: int, binary: _Binary | None) -> Tensor:
    where = f"inputs[{i}]"
    if not isinstance(t, dict):
        raise BadInput(f"{where}: expected an object with name, shape, datatype and data")
    size = _parameters(t.get("parameters"), where).get("binary_data_size")
    for field in (
        ("name", "shape", "datatype") if size is not None else ("name", "shape", "datatype", "data")
    ):
        if field not in t:
            raise BadInput(f"{where}: missing field {field!r}")
    if not isinstance(t["name"], str):
        raise BadInput(f"{where}.name: expected a string, got {json.dumps(t['name'])}")
    shape = check_shape(t["shape"], where)
    datatype = check_datatype(t["datatype"], where)
    if size is not None:
        if binary is None:
            raise BadInput(
                f"{where}: binary_data_size given, but the request has no binary data "
                "(no Inference-Header-Content-Length header)"
            )
        values = decode_raw(datatype, binary.take(size, where), math.prod(shape), where)
    else:
        values = _flatten(t["data"], where)
    return tensor(t["name"], shape, datatype, values, where)


def tensor_records(tensors: list[Tensor], inputs: list) -> list[dict]:
    """Records for ``serving.predict``: one [N, n_features] tensor (columns in the
    model's input order), or one [N] or [N, 1] tensor per input, named for it. Text
    given for a numeric input (BYTES) must read as a number."""
    if not tensors:
        raise BadInput('request body: "inputs" must be a non-empty list of tensors')
    features = [i.name for i in inputs]
    numeric = {i.name for i in inputs if i.type == "double"}
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(features):
        _, (n, d), data = tensors[0]  # one [N, d] tensor, columns in the model's input order
        records = [dict(zip(features, data[r * d : (r + 1) * d], strict=True)) for r in range(n)]
        return _numbers(records, numeric, {f: f"inputs[0].{f}" for f in features})
    columns = {}
    for i, (name, shape, data) in enumerate(tensors):
        if name not in features:
            raise BadInput(
                f"inputs[{i}]: {name!r} is not an input of this model ({', '.join(features)})"
            )
        if name in columns:
            raise BadInput(f"inputs[{i}]: a second tensor for the model input {name!r}")
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise BadInput(f"inputs[{i}] ({name}): shape {shape} must be [N] or [N, 1]")
        columns[name] = data
    missing = [f for f in features if f not in columns]
    if missing:
        raise BadInput(f"inputs: no tensor for the model input {missing[0]!r}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise BadInput(f"inputs: tensors have different lengths {sorted(lengths)}")
    n = lengths.pop()
    where = {name: f"inputs[{i}].{name}" for i, (name, _, _) in enumerate(tensors)}
    return _numbers([{f: columns[f][r] for f in features} for r in range(n)], numeric, where)


def _numbers(records: list[dict], numeric: set[str], where: dict[str, str]) -> list[dict]:
    for rec in records:
        for name in numeric:
            if isinstance(rec[name], str):
                rec[name] = _text_number(rec[name], where[name])
    return records


def v2_records(body: dict, inputs: list, binary: bytes | None = None) -> list[dict]:
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadInput('request body: "inputs" must be a non-empty list of tensors')
    reader = _Binary(binary) if binary is not None else None
    records = tensor_records([_tensor(t, i, reader) for i, t in enumerate(tensors)], inputs)
    if reader is not None and reader.pos != len(reader.data):
        raise BadInput(
            f"request body: {len(reader.data) - reader.pos} bytes of binary data after the "
            "last tensor's binary_data_size"
        )
    return records


def check_output(name, i: int) -> None:
    if name != OUTPUT:
        raise BadInput(f"outputs[{i}]: this model has one output, {OUTPUT!r}")


@bp.get("/v2")
@needs("model.read")
def v2_server():
    return jsonify(
        {
            "name": "falaj",
            "version": appliance_pkg.__version__,
            "extensions": ["binary_tensor_data"],
        }
    )


@bp.get("/v2/health/live")
@needs("model.read")
def v2_live():
    return jsonify({"live": True})


@bp.get("/v2/health/ready")
@needs("model.read")
def v2_ready():
    appliance().serving.server.refresh()  # raises (503) if the stores cannot be read
    return jsonify({"ready": True})


def _live(name: str, version: str | None):
    return live_model(appliance().serving.server, name, version)


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
@needs("model.read")
def v2_model(name: str, version: str | None = None):
    return jsonify(model_metadata(name, _live(name, version)))


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
@needs("model.read")
def v2_model_ready(name: str, version: str | None = None):
    _live(name, version)
    return jsonify({"name": name, "ready": True})


MAX_INFLATED = 64 * 1024 * 1024  # bytes a compressed request body may grow to


def _inflate(data: bytes) -> bytes:
    """A request body sent with Content-Encoding gzip or deflate (tritonclient's
    request_compression_algorithm), refused past ``MAX_INFLATED`` bytes."""
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib, told apart by the header
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
    except zlib.error as e:
        raise BadInput(f"request body: not valid {request.content_encoding} data ({e})") from None
    if len(out) > MAX_INFLATED or inflater.unconsumed_tail:
        raise BadInput(f"request body: inflates to more than {MAX_INFLATED} bytes")
    if not inflater.eof:
        raise BadInput(f"request body: the {request.content_encoding} data is cut short")
    return out


def _v2_body() -> tuple[dict, bytes | None]:
    """The JSON header and, with the binary tensor data extension, the bytes after it.
    JSON whatever the Content-Type: the protocol does not ask for one, and Triton's
    client sends none."""
    data = request.get_data()
    encoding = (request.content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "deflate"):
        data = _inflate(data)
    elif encoding != "identity":
        raise BadInput(
            f"Content-Encoding: {encoding!r} is not supported (gzip, deflate or identity)"
        )
    length = request.headers.get("Inference-Header-Content-Length")
    binary = None
    if length is not None:
        if not length.isdigit() or int(length) > len(data):
            raise BadInput(
                f"Inference-Header-Content-Length: {length!r} is not a length within the "
                f"body's {len(data)} bytes"
            )
        data, binary = data[: int(length)], data[int(length) :]
    body = current_app.json.loads(data)
    if not isinstance(body, dict):
        raise BadInput("request body: expected a JSON object")
    return body, binary


def _flag(params: dict, key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise BadInput(f"{where}.parameters.{key}: expected true or false, got {json.dumps(value)}")
    return value


def _v2_infer(name: str, version: str | None):
    body, binary = _v2_body()
    model = _live(name, version)
    binary_default = bool(
        _flag(
            _parameters(body.get("parameters"), "request body"),
            "binary_data_output",
            "request body",
        )
    )
    outputs = body.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        raise BadInput(
            f'request body: "outputs" must be a list of {{"name": ...}} objects, got {json.dumps(outputs)}'
        )
    binary_out = binary_default if not outputs else False
    for i, out in enumerate(outputs or []):
        if not isinstance(out, dict):
            raise BadInput(f"outputs[{i}]: this model has one output, {OUTPUT!r}")
        check_output(out.get("name"), i)
        params = _parameters(out.get("parameters"), f"outputs[{i}]")
        if params.get("classification"):
            raise BadInput(
                f"outputs[{i}].parameters.classification: not supported; the output is a probability"
            )
        flag = _flag(params, "binary_data", f"outputs[{i}]")
        binary_out = binary_default if flag is None else flag
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInput(f'request body: "id" must be a string, got {json.dumps(request_id)}')
    result = appliance().serving.predict(
        name, v2_records(body, model.inputs, binary), request_actor(), where="inputs",
        key=request_key(),
    )  # fmt: skip
    return result, request_id, binary_out


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
@needs("model.predict")
def v2_infer(name: str, version: str | None = None):
    result, request_id, binary_out = scored(name, lambda: _v2_infer(name, version))
    predictions = result["predictions"]
    out = {"name": OUTPUT, "shape": [len(predictions)], "datatype": OUTPUT_DATATYPE}
    answer = {
        "model_name": name,
        "model_version": str(result["version"]),
        "id": request_id or result["request_id"],
        "parameters": {"receipt": result["receipt"]},
        "outputs": [out],
    }
    if not binary_out:
        out["data"] = predictions
        return jsonify(answer)  # uncompressed, whatever Accept-Encoding allows
    raw = np.asarray(predictions, dtype=DTYPES[OUTPUT_DATATYPE]).tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    header = current_app.json.dumps(answer).encode()
    return Response(
        header + raw,
        content_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


# -- MLflow scoring server -----------------------------------------------------

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@bp.get("/ping")
@bp.get("/health")
@needs("model.read")
def mlflow_ping():
    appliance().serving.server.refresh()
    return "\n", 200, {"Content-Type": "text/plain; charset=utf-8"}


def _rows_to_records(rows, features: list[str], where: str) -> list:
    """A list of objects, or of arrays in the model's input order."""
    if not isinstance(rows, list):
        raise BadInput(f"{where}: expected a list")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, list):
            if len(row) != len(features):
                raise BadInput(
                    f"{where}[{i}]: expected {len(features)} values ({', '.join(features)}), got {len(row)}"
                )
            row = dict(zip(features, row, strict=True))
        out.append(row)
    return out


def mlflow_records(body: dict, features: list[str]) -> list:
    present = [k for k in MLFLOW_FORMATS if k in body]
    if len(present) != 1:
        raise BadInput(
            f"request body: give exactly one of {', '.join(MLFLOW_FORMATS)} (got {present or 'none'})"
        )
    key = present[0]
    value = body[key]
    if key == "dataframe_split":
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("columns"), list)
            or "data" not in value
        ):
            raise BadInput('dataframe_split: expected {"columns": [...], "data": [[...], ...]}')
        columns, data = value["columns"], value["data"]
        seen: set[str] = set()
        for j, column in enumerate(columns):
            if not isinstance(column, str):  # a list or object cannot be a record's key
                raise BadInput(
                    f"dataframe_split.columns[{j}]: expected a column name (a string), got {json.dumps(column)}"
                )
            if column in seen:
                raise BadInput(f"dataframe_split.columns[{j}]: {column!r} appears twice")
            seen.add(column)
        if not isinstance(data, list):
            raise BadInput("dataframe_split.data: expected a list of rows")
        records = []
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadInput(
                    f"dataframe_split.data[{i}]: expected a row of {len(columns)} values"
                )
            records.append(dict(zip(columns, row, strict=True)))
        return records
    if key == "inputs" and isinstance(value, dict):  # columnar: {column: [values]}
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise BadInput("inputs: expected {column: [values]} with lists of equal length")
        n = lengths.pop()
        return [{c: v[r] for c, v in value.items()} for r in range(n)]
    return _rows_to_records(value, features, key)


def csv_records(text: str) -> list[dict]:
    """Rows of numbers under a header line; an empty field is a missing value (null).
    Errors name the line (as an editor counts them) and the column."""
    reader = csv.reader(io.StringIO(text, newline=""))  # csv reads \r, \n and \r\n itself
    records = []
    try:
        header = next(reader, None)
        if header is None:
            raise BadInput("CSV: the body is empty; expected a header line of column names")
        seen: set[str] = set()
        for col in header:
            if col and col in seen:  # an unnamed column (a pandas index) may come more than once
                raise BadInput(f"CSV line 1: column {col!r} appears twice")
            seen.add(col)
        for row in reader:
            if not row:  # a blank line
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise BadInput(
                    f"CSV line {line}: {len(row)} fields, but the header has {len(header)} columns"
                )
            rec = {}
            for col, value in zip(header, row, strict=True):
                if not col:
                    continue
                rec[col] = _csv_number(value, line, col) if value != "" else None
            records.append(rec)
    except csv.Error as e:  # e.g. a field over the csv module's size limit
        raise BadInput(f"CSV line {reader.line_num}: {e}") from None
    return records


def _csv_number(value: str, line: int, col: str) -> float:
    shown = value if len(value) <= 40 else value[:40] + "…"
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"CSV line {line}, column {col!r}: {shown!r} is not a number") from None
    if not math.isfinite(number):
        raise BadInput(f"CSV line {line}, column {col!r}: {shown!r} is not a finite number")
    return number


def _invocations(name: str):
    result = scored(name, lambda: _mlflow_predict(name))
    response = jsonify({"predictions": result["predictions"]})
    response.headers["X-Falaj-Receipt"] = result["receipt"]  # MLflow's body has no room
    return response


def _mlflow_predict(name: str) -> dict:
    model = appliance().serving.server.get(name).live
    if request.mimetype == "text/csv":
        records = csv_records(request.get_data(as_text=True))
    else:
        records = mlflow_records(json_body(), model.features)
    return appliance().serving.predict(name, records, request_actor(), key=request_key())


@bp.post("/invocations")
@needs("model.predict")
def mlflow_invocations():
    name = request.args.get("model")
    if name is None:
        names = sorted(appliance().serving.server.deployments())
        if len(names) != 1:
            raise BadInput(
                f"{len(names)} models are deployed ({', '.join(names) or 'none'}): "
                "POST to /models/NAME/invocations or /invocations?model=NAME"
            )
        name = names[0]
    return _invocations(name)


@bp.post("/models/<name>/invocations")
@needs("model.predict")
def mlflow_model_invocations(name: str):
    return _invocations(name)
