"""NVIDIA's Triton client, unchanged, against a real Falaj server: over HTTP (JSON and
binary tensors) and over gRPC, every datatype, both layouts, errors and a large batch,
with the same answers as the native API."""

import numpy as np
import pytest

tritonclient = pytest.importorskip("tritonclient")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient._plugin import InferenceServerClientPlugin  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from appliance.core import Appliance  # noqa: E402
from tests.conftest import ACTOR, FEATURES, RECORD, Server, find_free_port  # noqa: E402

MODEL = "credit"
ROWS = [RECORD, RECORD | {"age": 60.0, "num_late_payments": 3.0}, dict.fromkeys(FEATURES, 2.0)]
MATRIX = np.array([[r[f] for f in FEATURES] for r in ROWS])
DATATYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32,
             "BOOL": np.bool_, "BYTES": np.object_}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: credit@1 trained on the demo data and deployed, the
    Open Inference Protocol over HTTP and gRPC."""
    from appliance import demo

    home = tmp_path_factory.mktemp("triton") / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        app.ingestion.ingest(
            demo.credit_risk(3000, seed=3), "loans", "customer_id", "event_time", ACTOR
        )
        app.training.train("loans", "default", MODEL, ACTOR, features=tuple(FEATURES))
        app.serving.deploy(MODEL, 1, ACTOR)
    finally:
        app.close()
    grpc_port = find_free_port()
    s = Server(home, "--grpc-port", str(grpc_port))
    s.grpc_url = f"127.0.0.1:{grpc_port}"
    try:
        yield s.wait()
    finally:
        s.stop()


class Bearer(InferenceServerClientPlugin):
    """tritonclient's way to send a header with every call: the server's admin token."""

    def __init__(self, server) -> None:
        self.value = server.headers()["Authorization"]

    def __call__(self, request) -> None:
        request.headers["authorization"] = self.value


def native(server, rows) -> np.ndarray:
    status, body = server.request("POST", f"/api/v1/models/{MODEL}/predict", {"records": rows})
    assert status == 200, body
    return np.array(body["predictions"])


@pytest.fixture(scope="module")
def expected(server):
    return native(server, ROWS)


@pytest.fixture(scope="module")
def http(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    client.register_plugin(Bearer(server))
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_plugin(Bearer(server))  # sent as gRPC metadata
    yield client
    client.close()


def cast(matrix: np.ndarray, datatype: str) -> np.ndarray:
    if datatype == "BYTES":  # numbers as text, as a client holding strings sends them
        text = np.array([str(v).encode() for v in matrix.ravel().tolist()], dtype=np.object_)
        return text.reshape(matrix.shape)
    return matrix.astype(DATATYPES[datatype])


def inputs_for(module, matrix, datatype, layout, binary=None):
    kw = {} if binary is None else {"binary_data": binary}
    if layout == "matrix":
        t = module.InferInput("input-0", list(matrix.shape), datatype)
        t.set_data_from_numpy(cast(matrix, datatype), **kw)
        return [t]
    tensors = []
    for j, f in enumerate(FEATURES):
        t = module.InferInput(f, [matrix.shape[0]], datatype)
        t.set_data_from_numpy(cast(matrix[:, j], datatype), **kw)
        tensors.append(t)
    return tensors


def reference(server, matrix, datatype):
    """The native API's answers for the values as the datatype carries them."""
    values = cast(matrix, datatype)
    if datatype == "BYTES":
        values = values.astype(str).astype(np.float64)
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in values]
    return native(server, rows)


# -- HTTP -------------------------------------------------------------------


def test_http_health_and_metadata(http):
    assert http.is_server_live() and http.is_server_ready()
    assert http.is_model_ready(MODEL) and http.is_model_ready(MODEL, "1")
    assert not http.is_model_ready("ghost") and not http.is_model_ready(MODEL, "2")
    assert http.get_server_metadata()["name"] == "falaj"
    meta = http.get_model_metadata(MODEL)
    assert [i["name"] for i in meta["inputs"]] == FEATURES and meta["versions"] == ["1"]
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP64", "shape": [-1]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("layout", ["matrix", "columns"])
@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_http_infer_every_datatype_and_layout(server, http, datatype, layout, binary):
    matrix = MATRIX if datatype != "BOOL" else (MATRIX > 1.5)
    result = http.infer(
        MODEL,
        inputs_for(httpclient, matrix, datatype, layout, binary),
        outputs=[httpclient.InferRequestedOutput("probability", binary_data=binary)],
        request_id="req-7",
    )
    np.testing.assert_allclose(
        result.as_numpy("probability"), reference(server, matrix, datatype), rtol=1e-6
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        MODEL,
        "1",
        "req-7",
    )
    assert ("parameters" in response["outputs"][0]) is binary  # binary_data_size when binary


def test_http_outputs_default_to_binary_and_versions_are_honoured(http, expected):
    result = http.infer(MODEL, inputs_for(httpclient, MATRIX, "FP64", "matrix"), model_version="1")
    np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-12)
    assert result.as_numpy("probability").dtype == np.float64


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_http_compressed_requests(http, expected, compression):
    """Compressed requests are inflated; answers come back uncompressed, which the
    client reads whatever it asked for."""
    for binary in (True, False):
        result = http.infer(
            MODEL,
            inputs_for(httpclient, MATRIX, "FP64", "columns", binary),
            outputs=[httpclient.InferRequestedOutput("probability", binary_data=binary)],
            request_compression_algorithm=compression,
            response_compression_algorithm=compression,
        )
        np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda c: c.infer("ghost", inputs_for(httpclient, MATRIX, "FP64", "matrix")), "'ghost' is not deployed"),
        (lambda c: c.infer(MODEL, inputs_for(httpclient, MATRIX, "FP64", "matrix"), model_version="2"), "version 2 is not live"),
        (lambda c: c.infer(MODEL, inputs_for(httpclient, MATRIX, "FP64", "columns")[:-1]), "no tensor for the model input 'num_late_payments'"),
        (lambda c: c.infer(MODEL, inputs_for(httpclient, MATRIX, "FP64", "matrix"), outputs=[httpclient.InferRequestedOutput("label")]), "one output, 'probability'"),
        (lambda c: c.infer(MODEL, inputs_for(httpclient, np.full_like(MATRIX, np.inf), "FP64", "matrix")), "finite"),
        (lambda c: c.get_model_metadata("ghost"), "'ghost' is not deployed"),
    ],
)  # fmt: skip
def test_http_errors_reach_the_client(http, call, message):
    with pytest.raises(InferenceServerException) as e:
        call(http)
    assert message in e.value.message()


def test_http_large_batch_binary_and_json(server, http):
    rng = np.random.default_rng(5)
    matrix = np.abs(rng.normal(size=(5000, len(FEATURES)))) * MATRIX[0]
    want = native(server, [dict(zip(FEATURES, row, strict=True)) for row in matrix.tolist()])
    for binary in (True, False):
        result = http.infer(MODEL, inputs_for(httpclient, matrix, "FP64", "matrix", binary))
        np.testing.assert_allclose(result.as_numpy("probability"), want, rtol=1e-12)


def test_mlflow_formats_still_pass(server, expected):
    bodies = [
        {"dataframe_split": {"columns": FEATURES, "data": MATRIX.tolist()}},
        {"dataframe_records": ROWS},
        {"instances": ROWS},
        {"inputs": {f: [r[f] for r in ROWS] for f in FEATURES}},
    ]
    for body in bodies:
        status, answer = server.request("POST", "/invocations", body)
        assert status == 200, answer
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-12)


# -- gRPC -------------------------------------------------------------------


def test_grpc_health_and_metadata(grpc):
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.is_model_ready(MODEL) and grpc.is_model_ready(MODEL, "1")
    assert not grpc.is_model_ready("ghost") and not grpc.is_model_ready(MODEL, "2")
    assert grpc.get_server_metadata(as_json=True)["name"] == "falaj"
    meta = grpc.get_model_metadata(MODEL, as_json=True)
    assert [i["name"] for i in meta["inputs"]] == FEATURES and meta["versions"] == ["1"]
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP64", "shape": ["-1"]}]


@pytest.mark.parametrize("layout", ["matrix", "columns"])
@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_grpc_infer_every_datatype_and_layout(server, grpc, datatype, layout):
    matrix = MATRIX if datatype != "BOOL" else (MATRIX > 1.5)
    result = grpc.infer(
        MODEL,
        inputs_for(grpcclient, matrix, datatype, layout),
        outputs=[grpcclient.InferRequestedOutput("probability")],
        request_id="req-8",
    )
    np.testing.assert_allclose(
        result.as_numpy("probability"), reference(server, matrix, datatype), rtol=1e-6
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "req-8")


def test_grpc_typed_contents_as_well_as_raw(server, expected):
    """KServe's clients may send InferTensorContents instead of raw bytes. (Triton's own
    generated messages: Falaj's share their names, so both cannot load in one process.)"""
    import grpc as grpclib
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    tensor = pb.ModelInferRequest.InferInputTensor
    request = pb.ModelInferRequest(
        model_name=MODEL,
        inputs=[
            tensor(name="x", datatype="FP64", shape=list(MATRIX.shape),
                   contents=pb.InferTensorContents(fp64_contents=MATRIX.ravel().tolist()))
        ],
    )  # fmt: skip
    with grpclib.insecure_channel(server.grpc_url) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=[("authorization", server.headers()["Authorization"])]
        )
    got = np.frombuffer(response.raw_output_contents[0], dtype="<f8")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "call,code,message",
    [
        (lambda c: c.infer("ghost", inputs_for(grpcclient, MATRIX, "FP64", "matrix")), "NOT_FOUND", "'ghost' is not deployed"),
        (lambda c: c.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "matrix"), model_version="2"), "NOT_FOUND", "version 2 is not live"),
        (lambda c: c.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "columns")[:-1]), "INVALID_ARGUMENT", "no tensor for the model input 'num_late_payments'"),
        (lambda c: c.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "matrix"), outputs=[grpcclient.InferRequestedOutput("label")]), "INVALID_ARGUMENT", "one output, 'probability'"),
        (lambda c: c.infer(MODEL, inputs_for(grpcclient, np.full_like(MATRIX, np.inf), "FP64", "matrix")), "INVALID_ARGUMENT", "finite"),
        (lambda c: c.get_model_metadata("ghost"), "NOT_FOUND", "'ghost' is not deployed"),
    ],
)  # fmt: skip
def test_grpc_errors_map_to_status_codes(grpc, call, code, message):
    with pytest.raises(InferenceServerException) as e:
        call(grpc)
    assert e.value.status() == f"StatusCode.{code}" and message in e.value.message()


def test_grpc_large_batch_same_answers_as_http(server, grpc, http):
    rng = np.random.default_rng(6)
    matrix = np.abs(rng.normal(size=(5000, len(FEATURES)))) * MATRIX[0]
    by_grpc = grpc.infer(MODEL, inputs_for(grpcclient, matrix, "FP64", "matrix"))
    by_http = http.infer(MODEL, inputs_for(httpclient, matrix, "FP64", "matrix"))
    assert by_grpc.as_numpy("probability").shape == (5000,)
    np.testing.assert_array_equal(by_grpc.as_numpy("probability"), by_http.as_numpy("probability"))


def test_grpc_requests_are_counted_in_metrics(server, grpc):
    """gRPC scoring is counted in /metrics as the HTTP protocols' is: once each, with
    its outcome; a call without a valid token is refused before it is counted."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def counts():
        ask = urllib.request.Request(server.url + "/metrics", headers=server.headers())
        with urllib.request.urlopen(ask, timeout=30) as r:
            text = r.read().decode()
        got = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "falaj_requests_total":
                    got[(s.labels["model"], s.labels["status"])] = s.value
        return got

    before = counts()
    for _ in range(2):
        grpc.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "matrix"))
    for call in (lambda c: c.infer("ghost", inputs_for(grpcclient, MATRIX, "FP64", "matrix")),
                 lambda c: c.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "columns")[:-1])):  # fmt: skip
        with pytest.raises(InferenceServerException):
            call(grpc)
    anonymous = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as e:
        anonymous.infer(MODEL, inputs_for(grpcclient, MATRIX, "FP64", "matrix"))
    assert e.value.status() == "StatusCode.UNAUTHENTICATED"
    anonymous.close()
    after = counts()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in delta.items() if v} == {
        (MODEL, "ok"): 2, ("", "client_error"): 1, (MODEL, "client_error"): 1,
    }  # fmt: skip
