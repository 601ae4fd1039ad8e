"""The Open Inference Protocol (KServe V2) and MLflow's scoring format, against the
same model and the same prediction log as the native API."""

import gzip
import json

import numpy as np
import pytest

from tests.conftest import ACTOR, FEATURES, RECORD, admin_client

ROWS = [RECORD, RECORD | {"age": 60.0, "num_late_payments": 3.0}]


@pytest.fixture
def expected(trained):
    model = trained.registry.load("credit", 1)
    return np.array(model.predict_records(ROWS))


def column_tensors(rows):
    return [
        {"name": f, "shape": [len(rows)], "datatype": "FP64", "data": [r[f] for r in rows]}
        for f in FEATURES
    ]


def test_v2_health_and_metadata(client):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["name"] == "falaj"
    meta = client.get("/v2/models/credit").get_json()
    assert meta["versions"] == ["1"] and [i["name"] for i in meta["inputs"]] == FEATURES
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP64", "shape": [-1]}]
    assert client.get("/v2/models/credit/ready").get_json() == {"name": "credit", "ready": True}
    assert client.get("/v2/models/credit/versions/1/ready").status_code == 200
    r = client.get("/v2/models/credit/versions/2/ready")
    assert r.status_code == 404 and r.get_json() == {
        "error": "model 'credit' version 2 is not live (the live version is 1)"
    }
    r = client.get("/v2/models/ghost")
    assert r.status_code == 404 and "'ghost' is not deployed" in r.get_json()["error"]


def test_v2_infer_one_tensor_per_input(client, trained, expected):
    r = client.post("/v2/models/credit/infer", json={"id": "req-1", "inputs": column_tensors(ROWS)})
    assert r.status_code == 200
    body = r.get_json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("credit", "1", "req-1")
    (out,) = body["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("probability", [2], "FP64")
    np.testing.assert_allclose(out["data"], expected, rtol=1e-12)
    assert trained.serving.decision_count(ACTOR, "credit") == 2


def test_v2_infer_one_matrix_tensor_flat_or_nested(client, expected):
    matrix = [[r[f] for f in FEATURES] for r in ROWS]
    for data in (matrix, [v for row in matrix for v in row]):
        tensor = {"name": "input-0", "shape": [2, len(FEATURES)], "datatype": "FP32", "data": data}
        r = client.post("/v2/models/credit/versions/1/infer", json={"inputs": [tensor]})
        assert r.status_code == 200, r.get_json()
        np.testing.assert_allclose(r.get_json()["outputs"][0]["data"], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda t: t.pop(), "inputs: no tensor for the model input 'num_late_payments'"),
        (lambda t: t[0].update(data=[1.0]), "inputs[0] (age): shape [2] needs 2 values, got 1"),
        (
            lambda t: t[0].update(datatype="COMPLEX64"),
            "inputs[0].datatype: 'COMPLEX64' is not a numeric type or BYTES",
        ),
        (
            lambda t: t[0].update(datatype="BYTES", data=["1.5", "old"]),
            "inputs[0].age: text 'old' is not a number",
        ),
        (lambda t: t[1].update(data=[1.0, "x"]), "inputs[1].income: text 'x' is not a number"),
        (lambda t: t[0].update(name="colour"), "inputs[0]: 'colour' is not an input of this model"),
        (lambda t: t[0].pop("shape"), "inputs[0]: missing field 'shape'"),
        (
            lambda t: t[0].update(shape=[2, 2], data=[1, 2, 3, 4]),
            "inputs[0] (age): shape [2, 2] must be [N] or [N, 1]",
        ),
    ],
)
def test_v2_bad_requests_are_400_in_the_protocol_error_shape(client, trained, mutate, message):
    tensors = column_tensors(ROWS)
    mutate(tensors)
    r = client.post("/v2/models/credit/infer", json={"inputs": tensors})
    assert r.status_code == 400
    assert set(r.get_json()) == {"error"} and message in r.get_json()["error"]
    assert trained.serving.decision_count(ACTOR) == 0


def test_v2_requested_output_must_exist(client):
    r = client.post(
        "/v2/models/credit/infer",
        json={"inputs": column_tensors(ROWS), "outputs": [{"name": "label"}]},
    )
    assert r.status_code == 400 and "one output, 'probability'" in r.get_json()["error"]


MLFLOW_BODIES = {
    "dataframe_split": {
        "dataframe_split": {"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in ROWS]}
    },
    "dataframe_records": {"dataframe_records": ROWS},
    "instances": {"instances": ROWS},
    "instances_lists": {"instances": [[r[f] for f in FEATURES] for r in ROWS]},
    "inputs_columnar": {"inputs": {f: [r[f] for r in ROWS] for f in FEATURES}},
}


@pytest.mark.parametrize("kind", sorted(MLFLOW_BODIES))
def test_mlflow_invocations_formats(client, expected, kind):
    for url in ("/invocations", "/models/credit/invocations", "/invocations?model=credit"):
        r = client.post(url, json=MLFLOW_BODIES[kind])
        assert r.status_code == 200, r.get_json()
        np.testing.assert_allclose(r.get_json()["predictions"], expected, rtol=1e-12)


def test_mlflow_csv_and_ping(client, expected):
    text = (
        ",".join(FEATURES)
        + "\n"
        + "\n".join(",".join(str(r[f]) for f in FEATURES) for r in ROWS)
        + "\n"
    )
    r = client.post("/invocations", data=text, content_type="text/csv")
    assert r.status_code == 200
    np.testing.assert_allclose(r.get_json()["predictions"], expected, rtol=1e-12)
    r = client.post("/invocations", data="age,income\nold,1\n", content_type="text/csv")
    assert (
        r.status_code == 400
        and r.get_json()["message"] == "CSV line 2, column 'age': 'old' is not a number"
    )
    assert client.get("/ping").status_code == 200 and client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "body,message",
    [
        ({"dataframe_records": ROWS, "instances": ROWS}, "give exactly one of"),
        ({"records": ROWS}, "give exactly one of"),
        (
            {"dataframe_split": {"columns": FEATURES, "data": [[1.0]]}},
            "dataframe_split.data[0]: expected a row of 8 values",
        ),
        ({"instances": [[1.0, 2.0]]}, "instances[0]: expected 8 values"),
        ({"inputs": {"age": [1.0], "income": [1.0, 2.0]}}, "lists of equal length"),
        ({"dataframe_records": [{"age": 1.0}]}, "records[0].income: missing"),
    ],
)
def test_mlflow_bad_requests(client, trained, body, message):
    r = client.post("/invocations", json=body)
    assert r.status_code == 400
    assert r.get_json()["error_code"] == "BAD_REQUEST" and message in r.get_json()["message"]
    assert trained.serving.decision_count(ACTOR) == 0


def test_invocations_needs_a_name_when_several_models_serve(client, trained):
    trained.training.train("loans", "default", "other", ACTOR, features=tuple(FEATURES))
    trained.serving.deploy("other", 1, ACTOR)
    r = client.post("/invocations", json=MLFLOW_BODIES["dataframe_records"])
    assert (
        r.status_code == 400 and "2 models are deployed (credit, other)" in r.get_json()["message"]
    )
    assert (
        client.post("/invocations?model=other", json=MLFLOW_BODIES["instances"]).status_code == 200
    )
    r = client.post("/models/ghost/invocations", json=MLFLOW_BODIES["instances"])
    assert r.status_code == 404 and r.get_json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


# -- bad input is a 4xx naming the field, never a 500 (each of these was a 500) ------------


def strict_json(data: bytes):
    """Parse as a strict JSON parser would: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize(
    "mutate,message",
    [
        # an unhashable datatype could not be looked up in the set of types
        (lambda t: t[0].update(datatype=["FP64"]), 'inputs[0].datatype: expected a string naming a tensor type, got ["FP64"]'),
        (lambda t: t[0].update(datatype={}), "inputs[0].datatype: expected a string naming a tensor type, got {}"),
        (lambda t: t[0].update(name=["age"]), 'inputs[0].name: expected a string, got ["age"]'),
        (lambda t: t.append(dict(t[0])), "inputs[8]: a second tensor for the model input 'age'"),
    ],
)  # fmt: skip
def test_v2_malformed_tensor_fields_are_400(client, trained, mutate, message):
    tensors = column_tensors(ROWS)
    mutate(tensors)
    r = client.post("/v2/models/credit/infer", json={"inputs": tensors})
    assert r.status_code == 400 and r.get_json() == {"error": message}
    assert trained.serving.decision_count(ACTOR) == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        # "outputs" was iterated as given: an integer or a boolean raised a TypeError
        ({"outputs": 5}, 'request body: "outputs" must be a list of {"name": ...} objects, got 5'),
        ({"outputs": True}, 'request body: "outputs" must be a list of {"name": ...} objects, got true'),
        ({"outputs": {}}, 'request body: "outputs" must be a list of {"name": ...} objects, got {}'),
        ({"id": {"a": 1}}, 'request body: "id" must be a string, got {"a": 1}'),
    ],
)  # fmt: skip
def test_v2_malformed_outputs_and_id_are_400(client, extra, message):
    r = client.post("/v2/models/credit/infer", json={"inputs": column_tensors(ROWS), **extra})
    assert r.status_code == 400 and r.get_json() == {"error": message}


@pytest.mark.parametrize(
    "columns,message",
    [
        # a list as a column name cannot be a record's key: TypeError, unhashable type
        ([["age"]], 'dataframe_split.columns[0]: expected a column name (a string), got ["age"]'),
        (["age", {}], "dataframe_split.columns[1]: expected a column name (a string), got {}"),
        (["age", "age"], "dataframe_split.columns[1]: 'age' appears twice"),
    ],
)
def test_mlflow_dataframe_split_column_names_must_be_strings(client, columns, message):
    body = {"dataframe_split": {"columns": columns, "data": [[1.0] * len(columns)]}}
    r = client.post("/invocations", json=body)
    assert r.status_code == 400
    assert r.get_json() == {"error_code": "BAD_REQUEST", "message": message}


HEADER = ",".join(FEATURES)
ONES = ",".join(["1"] * len(FEATURES))


@pytest.mark.parametrize(
    "text,message",
    [
        # DictReader put the surplus fields under the key None, as a list: float(list) failed
        (f"{HEADER}\n{ONES},1\n", "CSV line 2: 9 fields, but the header has 8 columns"),
        (f"{HEADER}\n{ONES}\n1,2\n", "CSV line 3: 2 fields, but the header has 8 columns"),
        # the csv module's field size limit raised csv.Error
        (f"{HEADER}\n{ONES}\n{'1' * 131_073}{ONES[1:]}\n", "CSV line 3: field larger than field limit (131072)"),
        (f"{HEADER}\n{ONES[:-1]}nan\n", "CSV line 2, column 'num_late_payments': 'nan' is not a finite number"),
        (f"{HEADER}\n{ONES[:-1]}1e999\n", "CSV line 2, column 'num_late_payments': '1e999' is not a finite number"),
        ("age,age\n1,2\n", "CSV line 1: column 'age' appears twice"),
        ("", "CSV: the body is empty; expected a header line of column names"),
    ],
)  # fmt: skip
def test_mlflow_csv_errors_name_the_line(client, trained, text, message):
    r = client.post("/invocations", data=text, content_type="text/csv")
    assert r.status_code == 400
    assert r.get_json() == {"error_code": "BAD_REQUEST", "message": message}
    assert trained.serving.decision_count(ACTOR) == 0


def test_mlflow_csv_line_ends_blank_lines_and_an_unnamed_index_column(client, expected):
    rows = [f"{i}," + ",".join(str(r[f]) for f in FEATURES) for i, r in enumerate(ROWS)]
    text = f",{HEADER}\r\n\r\n{rows[0]}\r{rows[1]}\n\n"  # Windows, old Mac and Unix ends
    r = client.post("/invocations", data=text, content_type="text/csv")
    assert r.status_code == 200, r.get_json()
    np.testing.assert_allclose(r.get_json()["predictions"], expected, rtol=1e-12)


DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    "url,body,error",
    [
        # json.loads raised RecursionError, which get_json(silent=True) does not catch
        ("/api/v1/models/credit/predict", '{"records": %s}', lambda m: {"error": {"type": "BadInput", "message": m}}),
        ("/v2/models/credit/infer", '{"inputs": %s}', lambda m: {"error": m}),
        ("/v2/models/credit/versions/1/infer", "%s", lambda m: {"error": m}),
        ("/invocations", '{"instances": %s}', lambda m: {"error_code": "BAD_REQUEST", "message": m}),
        ("/models/credit/invocations", '{"inputs": {"age": %s}}', lambda m: {"error_code": "BAD_REQUEST", "message": m}),
    ],
)  # fmt: skip
def test_deeply_nested_json_is_400(client, url, body, error):
    message = "request body: JSON nested deeper than 100 levels"
    for depth in (101, 1000, 100_000):  # past the limit, about the recursion limit, far past it
        data = body % ("[" * depth + "]" * depth)
        r = client.post(url, data=data, content_type="application/json")
        assert r.status_code == 400 and strict_json(r.data) == error(message), (depth, r.data)
    nested = body % ("[" * 90 + "1" + "]" * 90)  # deep, but within the limit: an ordinary 400
    r = client.post(url, data=nested, content_type="application/json")
    assert r.status_code == 400 and "nested" not in r.get_data(as_text=True)


@pytest.mark.parametrize(
    "data,message",
    [
        (b'{"records": [1,]}', "request body: expected JSON; Expecting value at line 1, column 16"),
        (b"\xff\xfe{", "request body: expected JSON in UTF-8 (or UTF-16/32 with a BOM)"),
        (b'{"records": [' + b"1" * 5000 + b"]}", "request body: a number has more than 4300 digits"),
    ],
)  # fmt: skip
def test_unreadable_json_says_why_and_where(client, data, message):
    r = client.post("/api/v1/models/credit/predict", data=data, content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["message"] == message


def test_a_non_finite_input_is_400_naming_the_field(client, trained):
    # JSON's extensions, and a number past float (NaN reads as a missing value, like null)
    for value in ("Infinity", "-1e999"):
        data = '{"dataframe_records": [' + json.dumps(RECORD)[:-1] + ', "age": ' + value + "}]}"
        r = client.post("/invocations", data=data, content_type="application/json")
        assert r.status_code == 400 and "records[0].age" in strict_json(r.data)["message"]
    assert trained.serving.decision_count(ACTOR) == 0


INTERNAL = "internal error: the server log has the details"
SHAPES = {
    "/api/v1/failing/{}": lambda kind, m: {"error": {"type": kind, "message": m}},
    "/v2/failing/{}": lambda kind, m: {"error": m},
    "/failing/{}/invocations": lambda kind, m: {
        "error_code": {"InternalServerError": "INTERNAL_ERROR", "StoreError": "TEMPORARILY_UNAVAILABLE"}[kind],
        "message": m,
    },
}  # fmt: skip
PAGE = "/failing/{}"


@pytest.fixture
def failing(app):
    """The web app as in production, plus routes that fail as a bug would, one under
    each protocol's prefix (each answers errors in its own shape)."""
    from flask import Blueprint, jsonify

    from appliance.errors import StoreError
    from webui import create_app
    from webui.auth import public

    bp = Blueprint("failing", __name__)

    def boom():
        raise RuntimeError(f"boom in {app.home}/control.db via /usr/lib/python3/secret.py")

    def nan():
        return jsonify({"predictions": [0.5, float("nan")]})

    def unreadable():
        raise StoreError(
            f"cannot read {app.home}/control.db (see /var/log/falaj/x.log); "
            "POST to /models/NAME/invocations"
        )

    for i, url in enumerate([*SHAPES, PAGE]):
        for view in (boom, nan, unreadable):
            bp.add_url_rule(url.format(view.__name__), f"{view.__name__}{i}", public(view))
    flask_app = create_app(app, {"TESTING": True, "PROPAGATE_EXCEPTIONS": False})
    flask_app.register_blueprint(bp)
    return flask_app.test_client()  # public routes: no credential needed


@pytest.mark.parametrize("url", sorted(SHAPES))
def test_an_unexpected_error_is_a_logged_json_500_without_details(failing, url, caplog):
    r = failing.get(url.format("boom"))
    assert r.status_code == 500
    assert strict_json(r.data) == SHAPES[url]("InternalServerError", INTERNAL)
    assert "Traceback" in caplog.text and "RuntimeError: boom in" in caplog.text  # logged in full


def test_an_unexpected_error_on_a_page_is_an_html_500(failing):
    r = failing.get(PAGE.format("boom"), headers={"Accept": "text/html"})
    assert r.status_code == 500 and r.mimetype == "text/html"
    assert INTERNAL.encode() in r.data and b"boom" not in r.data


@pytest.mark.parametrize("url", sorted(SHAPES))
def test_a_non_finite_number_is_never_sent(failing, url, caplog):
    """The service refuses non-finite predictions; should a NaN still reach a response,
    the JSON provider refuses to write it: a logged 500 in strict JSON, never a bare NaN."""
    r = failing.get(url.format("nan"))
    assert r.status_code == 500 and b"NaN" not in r.data
    assert strict_json(r.data) == SHAPES[url]("InternalServerError", INTERNAL)
    assert "Out of range float values are not JSON compliant" in caplog.text


@pytest.mark.parametrize("url", sorted(SHAPES))
def test_error_messages_never_show_server_paths(failing, url):
    r = failing.get(url.format("unreadable"))
    message = "cannot read FALAJ_HOME/control.db (see x.log); POST to /models/NAME/invocations"
    assert r.status_code == 503 and strict_json(r.data) == SHAPES[url]("StoreError", message)


def binary_request(rows, dtype="<f8", datatype="FP64", extra=b"", sizes=None):
    """A V2 request in the binary tensor data extension: one tensor per input."""
    chunks = [np.array([r[f] for r in rows], dtype=dtype).tobytes() for f in FEATURES]
    inputs = [
        {"name": f, "shape": [len(rows)], "datatype": datatype,
         "parameters": {"binary_data_size": len(c) if sizes is None else sizes[j]}}
        for j, (f, c) in enumerate(zip(FEATURES, chunks, strict=True))
    ]  # fmt: skip
    header = json.dumps({"inputs": inputs, "outputs": [{"name": "probability"}]}).encode()
    return header, b"".join(chunks) + extra


def test_v2_binary_inputs_without_a_content_type(client, expected):
    header, data = binary_request(ROWS, "<f4", "FP32")
    r = client.post(
        "/v2/models/credit/infer",
        data=header + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.data
    np.testing.assert_allclose(r.get_json()["outputs"][0]["data"], expected, rtol=1e-6)
    # asked for binary outputs, the answer is the JSON header then little-endian FP64
    body = json.loads(header) | {"parameters": {"binary_data_output": True}}
    body.pop("outputs")
    header = json.dumps(body).encode()
    r = client.post(
        "/v2/models/credit/infer",
        data=header + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200 and r.mimetype == "application/octet-stream"
    raw = r.data
    n = int(r.headers["Inference-Header-Content-Length"])
    (out,) = json.loads(raw[:n])["outputs"]
    assert out["parameters"] == {"binary_data_size": 8 * len(ROWS)} and "data" not in out
    np.testing.assert_allclose(np.frombuffer(raw[n:], "<f8"), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make,headers,message",
    [
        (lambda: binary_request(ROWS), lambda h: {"Inference-Header-Content-Length": "x"}, "Inference-Header-Content-Length: 'x' is not a length"),
        (lambda: binary_request(ROWS), lambda h: {"Inference-Header-Content-Length": "999999"}, "is not a length within the body's"),
        (lambda: binary_request(ROWS), lambda h: {}, "request body: expected JSON"),
        (lambda: binary_request(ROWS, extra=b"\0" * 3), None, "3 bytes of binary data after the last tensor"),
        (lambda: binary_request(ROWS, sizes=[16] * 7 + [17]), None, "binary_data_size 17 runs past the binary data (16 bytes left)"),
        (lambda: binary_request(ROWS, sizes=[15] + [16] * 7), None, "inputs[0]: shape needs 2 FP64 elements (16 bytes), got 15 bytes"),
        (lambda: binary_request(ROWS, sizes=[-1] * 8), None, "inputs[0].parameters.binary_data_size: expected a non-negative integer"),
    ],
)  # fmt: skip
def test_v2_malformed_binary_requests_are_400(client, trained, make, headers, message):
    header, data = make()
    hdrs = (
        {"Inference-Header-Content-Length": str(len(header))}
        if headers is None
        else headers(header)
    )
    r = client.post("/v2/models/credit/infer", data=header + data, headers=hdrs)
    assert r.status_code == 400 and message in r.get_json()["error"], r.data
    assert trained.serving.decision_count(ACTOR) == 0


def test_v2_binary_size_without_binary_data_is_400(client):
    tensors = column_tensors(ROWS)
    tensors[0] = {k: v for k, v in tensors[0].items() if k != "data"} | {
        "parameters": {"binary_data_size": 16}
    }
    r = client.post("/v2/models/credit/infer", json={"inputs": tensors})
    assert r.status_code == 400 and "no Inference-Header-Content-Length" in r.get_json()["error"]


@pytest.mark.parametrize(
    "encoding,data,message",
    [
        ("gzip", b"not gzip", "request body: not valid gzip data"),
        ("gzip", gzip.compress(b'{"inputs": []}', mtime=0)[:-12], "the gzip data is cut short"),
        ("br", b"{}", "Content-Encoding: 'br' is not supported"),
    ],
)
def test_v2_bad_content_encoding_is_400(client, encoding, data, message):
    r = client.post("/v2/models/credit/infer", data=data, headers={"Content-Encoding": encoding})
    assert r.status_code == 400 and message in r.get_json()["error"], r.data


def test_categorical_inputs_travel_as_bytes_text(app, credit_csv):
    """A model with categorical inputs: V2 metadata names them BYTES, and V2 tensors of
    text, MLflow's dataframe_split and the native API give the same answers, unseen
    categories and nulls included."""
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "cat", ACTOR, sensitive="gender",
                       features=(*FEATURES, "region", "loan_purpose"))  # fmt: skip
    app.serving.deploy("cat", 1, ACTOR)
    client = admin_client(app)
    meta = client.get("/v2/models/cat").get_json()
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert types["region"] == types["loan_purpose"] == "BYTES" and types["age"] == "FP64"
    assert "gender" not in types and meta["platform"] == "falaj-linear"

    region = app.features.query("SELECT any_value(region) AS r FROM loans")[0]["r"]
    rows = [RECORD | {"region": region, "loan_purpose": "car"},
            RECORD | {"region": "atlantis", "loan_purpose": None}]  # fmt: skip
    native = client.post("/api/v1/models/cat/predict", json={"records": rows}).get_json()
    p = native["predictions"]
    assert len(set(p)) == 2 and all(0 < x < 1 for x in p)
    model = app.registry.load("cat", 1)
    np.testing.assert_allclose(p, model.predict_records(rows), rtol=1e-12)

    tensors = column_tensors(rows) + [
        {"name": "region", "shape": [2], "datatype": "BYTES", "data": [region, "atlantis"]},
        {"name": "loan_purpose", "shape": [2], "datatype": "BYTES", "data": ["car", None]},
    ]
    r = client.post("/v2/models/cat/infer", json={"inputs": tensors})
    assert r.status_code == 200, r.get_json()
    np.testing.assert_allclose(r.get_json()["outputs"][0]["data"], p, rtol=1e-12)

    columns = [*FEATURES, "region", "loan_purpose"]
    split = {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}
    r = client.post("/invocations", json={"dataframe_split": split})
    assert r.status_code == 200, r.get_json()
    np.testing.assert_allclose(r.get_json()["predictions"], p, rtol=1e-12)

    bad = tensors[:-1] + [{"name": "loan_purpose", "shape": [2], "datatype": "FP64",
                           "data": [{"x": 1}, 2.0]}]  # fmt: skip
    r = client.post("/v2/models/cat/infer", json={"inputs": bad})
    assert r.status_code == 400 and "loan_purpose" in r.get_json()["error"]
