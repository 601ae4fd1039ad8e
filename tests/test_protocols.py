"""The Open Inference Protocol (KServe V2) and MLflow's scoring format, against the
same model and the same prediction log as the native API."""

import numpy as np
import pytest

from tests.conftest import ACTOR, FEATURES, RECORD

ROWS = [RECORD, RECORD | {"age": 60.0, "num_late_payments": 3.0}]


@pytest.fixture
def expected(trained):
    model = trained.load_model("credit", 1)
    return model.predict_matrix(np.array([[r[f] for f in FEATURES] for r in ROWS]))


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
    assert trained.prediction_count("credit") == 2


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
            lambda t: t[0].update(datatype="BYTES"),
            "inputs[0].datatype: 'BYTES' is not a numeric type",
        ),
        (lambda t: t[1].update(data=[1.0, "x"]), 'inputs[1].income: expected a number, got "x"'),
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
    assert trained.prediction_count() == 0


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
    assert trained.prediction_count() == 0


def test_invocations_needs_a_name_when_several_models_serve(client, trained):
    trained.train("loans", "default", "other", ACTOR)
    trained.deploy("other", 1, ACTOR)
    r = client.post("/invocations", json=MLFLOW_BODIES["dataframe_records"])
    assert (
        r.status_code == 400 and "2 models are deployed (credit, other)" in r.get_json()["message"]
    )
    assert (
        client.post("/invocations?model=other", json=MLFLOW_BODIES["instances"]).status_code == 200
    )
    r = client.post("/models/ghost/invocations", json=MLFLOW_BODIES["instances"])
    assert r.status_code == 404 and r.get_json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
