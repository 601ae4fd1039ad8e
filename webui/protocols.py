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

from flask import Blueprint, jsonify, request

import appliance as appliance_pkg
from appliance.errors import BadInput, NotDeployed
from webui.api import appliance, json_body, request_actor

bp = Blueprint("protocols", __name__)

NUMERIC_TYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                 "FP16", "FP32", "FP64"}  # fmt: skip
OUTPUT = "probability"


# -- Open Inference Protocol (KServe V2) -------------------------------------


@bp.get("/v2")
def v2_server():
    return jsonify({"name": "falaj", "version": appliance_pkg.__version__, "extensions": []})


@bp.get("/v2/health/live")
def v2_live():
    return jsonify({"live": True})


@bp.get("/v2/health/ready")
def v2_ready():
    appliance().serving.server.refresh()  # raises (503) if the stores cannot be read
    return jsonify({"ready": True})


def _live(name: str, version: str | None):
    deployment = appliance().serving.server.get(name)
    model = deployment.live
    if version is not None and version != str(model.version):
        raise NotDeployed(
            f"model {name!r} version {version} is not live (the live version is {model.version})"
        )
    return model


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
def v2_model(name: str, version: str | None = None):
    model = _live(name, version)
    return jsonify(
        {
            "name": name,
            "versions": [str(model.version)],
            "platform": "falaj-logistic-regression",
            "inputs": [{"name": f, "datatype": "FP64", "shape": [-1]} for f in model.features],
            "outputs": [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}],
        }
    )


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
def v2_model_ready(name: str, version: str | None = None):
    _live(name, version)
    return jsonify({"name": name, "ready": True})


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


def _tensor(t, i: int) -> tuple[str, list[int], list]:
    where = f"inputs[{i}]"
    if not isinstance(t, dict):
        raise BadInput(f"{where}: expected an object with name, shape, datatype and data")
    for field in ("name", "shape", "datatype", "data"):
        if field not in t:
            raise BadInput(f"{where}: missing field {field!r}")
    if not isinstance(t["name"], str):
        raise BadInput(f"{where}.name: expected a string, got {json.dumps(t['name'])}")
    shape = t["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise BadInput(f"{where}.shape: expected a list of non-negative integers")
    if not isinstance(t["datatype"], str):  # a list or object cannot even be looked up
        raise BadInput(
            f"{where}.datatype: expected a string naming a numeric type, got {json.dumps(t['datatype'])}"
        )
    if t["datatype"] not in NUMERIC_TYPES:
        raise BadInput(
            f"{where}.datatype: {t['datatype']!r} is not a numeric type ({', '.join(sorted(NUMERIC_TYPES))})"
        )
    data = _flatten(t["data"], where)
    if len(data) != math.prod(shape):
        raise BadInput(
            f"{where} ({t['name']}): shape {shape} needs {math.prod(shape)} values, got {len(data)}"
        )
    if t["datatype"] == "BOOL":
        data = [int(v) if isinstance(v, bool) else v for v in data]
    return t["name"], shape, data


def v2_records(body: dict, features: list[str]) -> list[dict]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput('request body: "inputs" must be a non-empty list of tensors')
    tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and tensors[0][1][1] == len(features):
        _, (n, d), data = tensors[0]  # one [N, d] tensor, columns in the model's input order
        return [dict(zip(features, data[r * d : (r + 1) * d], strict=True)) for r in range(n)]
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
    return [{f: columns[f][r] for f in features} for r in range(n)]


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
def v2_infer(name: str, version: str | None = None):
    body = json_body()
    model = _live(name, version)
    outputs = body.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        raise BadInput(
            f'request body: "outputs" must be a list of {{"name": ...}} objects, got {json.dumps(outputs)}'
        )
    for i, out in enumerate(outputs or []):
        if not isinstance(out, dict) or out.get("name") != OUTPUT:
            raise BadInput(f"outputs[{i}]: this model has one output, {OUTPUT!r}")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadInput(f'request body: "id" must be a string, got {json.dumps(request_id)}')
    result = appliance().serving.predict(
        name, v2_records(body, model.features), request_actor(), where="inputs"
    )
    return jsonify(
        {
            "model_name": name,
            "model_version": str(result["version"]),
            "id": request_id or result["request_id"],
            "outputs": [
                {
                    "name": OUTPUT,
                    "shape": [len(result["predictions"])],
                    "datatype": "FP64",
                    "data": result["predictions"],
                }
            ],
        }  # fmt: skip
    )


# -- MLflow scoring server -----------------------------------------------------

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@bp.get("/ping")
@bp.get("/health")
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
    model = appliance().serving.server.get(name).live
    if request.mimetype == "text/csv":
        records = csv_records(request.get_data(as_text=True))
    else:
        records = mlflow_records(json_body(), model.features)
    result = appliance().serving.predict(name, records, request_actor())
    return jsonify({"predictions": result["predictions"]})


@bp.post("/invocations")
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
def mlflow_model_invocations(name: str):
    return _invocations(name)
