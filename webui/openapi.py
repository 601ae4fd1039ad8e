"""The OpenAPI 3 description of the whole HTTP API, served at ``/api/openapi.json``.

Every rule in the app's URL map is described here, request bodies included; a test
fails when a route is added without its entry. The same document drives the fuzz test,
which sends generated requests to every operation and requires a 4xx, never a 5xx, and
valid JSON wherever JSON is promised.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

import appliance as appliance_pkg
from webui.audit import OPENAPI as AUDIT_PATHS
from webui.auth import OPENAPI as AUTH_PATHS
from webui.auth import needs
from webui.compliance import OPENAPI as COMPLIANCE_PATHS
from webui.ops import OPENAPI as OPS_PATHS
from webui.protocols import OUTPUT, TYPES
from webui.security import OPENAPI as SECURITY_PATHS

bp = Blueprint("openapi", __name__)

V2 = "Open Inference Protocol"

JSON = "application/json"
EXAMPLE_RECORD = {
    "age": 41,
    "income": 52000.0,
    "employment_years": 7.5,
    "loan_amount": 12000.0,
    "debt_to_income": 0.31,
    "credit_utilization": 0.42,
    "num_credit_lines": 5,
    "num_late_payments": 0,
}  # the demo workspace's credit model


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(shape: str | None) -> dict:
    """The error answers of an operation, in its protocol's error shape (None: HTML pages)."""
    found = _text("An error page", "text/html") if shape is None else _json(_ref(shape), "")
    return {
        "4XX": found | {"description": "Bad input (the message names the field), an unknown "
                        "model or version, a conflict with the current state, a body over 16 MiB"},
        "503": found | {"description": "A store cannot be read, or the model cannot serve"},
    }  # fmt: skip


def _text(description: str, media: str = "text/plain") -> dict:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "A deployed model's name",
    "schema": {"type": "string", "example": "credit"},
}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "A model version; it must be the live one",
    "schema": {"type": "string", "example": "1"},
}

SCHEMAS: dict[str, Any] = {
    # -- errors
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "V2Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "MlflowError": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    },
    # -- the native API
    "Record": {
        "type": "object",
        "description": "One input row: feature name to a finite number",
        "additionalProperties": {"type": "number"},
        "example": EXAMPLE_RECORD,
    },
    "PredictRequest": {
        "oneOf": [
            {
                "type": "object",
                "required": ["records"],
                "properties": {
                    "records": {"type": "array", "minItems": 1, "items": _ref("Record")}
                },
            },
            {
                "type": "object",
                "required": ["entities"],
                "description": "For a model trained on feature views: its features come from "
                "the online store",
                "properties": {
                    "entities": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": {
                                "oneOf": [{"type": "string"}, {"type": "integer"}]
                            },
                        },
                    }
                },
            },
        ],
    },
    "PredictResponse": {
        "type": "object",
        "required": ["model", "version", "predictions", "request_id"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "predictions": {"type": "array", "items": {"type": "number"}},
            "request_id": {"type": "string"},
            "receipt": {
                "type": "string",
                "description": "What `falaj audit prove` and "
                "/api/v1/audit/proof/{receipt} prove (the request_id)",
            },
            "statuses": {
                "type": "array",
                "description": "With entities: each feature's online status "
                "(PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE); missing values take the training means",
                "items": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
    "OnlineFeaturesRequest": {
        "type": "object",
        "required": ["features", "entities"],
        "properties": {
            "features": {
                "type": "array",
                "minItems": 1,
                "description": "Feature references: VIEW:COLUMN, VIEW@VERSION:COLUMN or VIEW:*",
                "items": {"type": "string"},
            },
            "entities": {
                "type": "array",
                "description": "One object per entity: each view's entity column to its key",
                "items": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
            },
            "full_names": {"type": "boolean", "description": "Name the values VIEW__COLUMN"},
        },
    },
    "OnlineFeaturesResponse": {
        "type": "object",
        "required": ["features", "results"],
        "properties": {
            "features": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The output names, in request order",
            },
            "results": {
                "type": "array",
                "description": "One per requested entity, in request order",
                "items": {
                    "type": "object",
                    "required": ["entity", "values", "statuses", "event_times"],
                    "properties": {
                        "entity": {"type": "object"},
                        "values": {
                            "type": "object",
                            "description": "Output name to value (null unless PRESENT)",
                        },
                        "statuses": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "string",
                                "enum": ["PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"],
                            },
                        },
                        "event_times": {
                            "type": "object",
                            "description": "Per view version, the event time of the row read",
                            "additionalProperties": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "deployments"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "deployments": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "integer"},
                        "slot": {"type": "string"},
                        "serving": {"type": "boolean"},
                        "degraded": {
                            "type": "object",
                            "description": "Slots out of service: slot to the reason",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "Decision": {
        "type": "object",
        "required": ["request_id", "model", "version", "outputs", "verified"],
        "properties": {
            "request_id": {"type": "string"},
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "outputs": {"type": "array", "items": {"type": "number"}},
            "variant": {
                "type": ["string", "null"],
                "description": "live, baseline or candidate (null: logged before routes)",
            },
            "inputs": {
                "type": "array",
                "description": "Per record, its raw inputs by feature name (categorical: the "
                "category's code among the training ones, -1 unseen; dates: epoch seconds; "
                "null: missing); null for a decision logged before inputs were kept",
                "items": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": ["number", "null"]},
                },
            },
            "input_fingerprints": {"type": "array", "items": {"type": "string"}},
            "audit_seq": {"type": ["integer", "null"]},
            "verified": {"type": "boolean"},
        },
    },
    "Models": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "features", "metrics", "live"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "integer"},
                        "features": {"type": "array", "items": {"type": "string"}},
                        "metrics": {"type": "object"},
                        "live": {"type": "boolean"},
                    },
                },
            }
        },
    },
    "Tables": {
        "type": "object",
        "required": ["tables"],
        "properties": {
            "tables": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["table", "rows", "columns"],
                    "properties": {
                        "table": {"type": "string"},
                        "rows": {"type": "integer"},
                        "columns": {"type": "object"},
                    },
                },
            }
        },
    },
    "AuditVerification": {
        "type": "object",
        "required": ["checked", "ok"],
        "properties": {
            "checked": {"type": "integer"},
            "hashed": {"type": "integer"},
            "ok": {"type": "boolean"},
            "first_bad": {"type": ["integer", "null"]},
            "reason": {"type": ["string", "null"]},
            "checkpoint": {
                "type": ["integer", "null"],
                "description": "the size of the signed checkpoint the store matched",
            },
        },
    },
    # -- the Open Inference Protocol (KServe V2)
    "V2Server": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    "V2ModelReady": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    "V2TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "V2Model": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
        },
    },
    "V2Tensor": {
        "type": "object",
        "description": "Values in data, or (binary tensor data extension) parameters."
        "binary_data_size bytes of the binary part after the JSON header",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {
                "type": "string",
                "description": "A model input, or any name for one [N, d] tensor",
            },
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": sorted(TYPES)},
            "parameters": {"type": "object"},
            "data": {
                "type": "array",
                "description": "Row-major values, flat or nested by shape",
                "items": {
                    "oneOf": [
                        {"type": "number"},
                        {"type": "boolean"},
                        {"type": "string", "description": "BYTES: a number as text"},
                        {"type": "array"},
                    ]
                },
            },
        },
    },
    "V2InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "items": _ref("V2Tensor")},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "enum": [OUTPUT]},
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
        },
    },
    "V2InferenceResponse": {
        "type": "object",
        "required": ["model_name", "model_version", "id", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string"},
                        "data": {"type": "array", "items": {"type": "number"}},
                        "parameters": {
                            "type": "object",
                            "description": "binary_data_size when the output is binary",
                        },
                    },
                },
            },
        },
    },
    # -- MLflow's scoring server
    "MlflowRows": {
        "description": "Objects, or arrays of values in the model's input order",
        "type": "array",
        "items": {"oneOf": [_ref("Record"), {"type": "array", "items": {"type": "number"}}]},
    },
    "MlflowRequest": {
        "description": "Exactly one of the four formats",
        "oneOf": [
            {
                "type": "object",
                "required": ["dataframe_split"],
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "required": ["columns", "data"],
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "index": {"type": "array"},
                            "data": {
                                "type": "array",
                                "items": {"type": "array", "items": {"type": ["number", "null"]}},
                            },
                        },
                    }
                },
            },
            {
                "type": "object",
                "required": ["dataframe_records"],
                "properties": {"dataframe_records": {"type": "array", "items": _ref("Record")}},
            },
            {
                "type": "object",
                "required": ["instances"],
                "properties": {"instances": _ref("MlflowRows")},
            },
            {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "inputs": {
                        "oneOf": [
                            _ref("MlflowRows"),
                            {
                                "type": "object",
                                "description": "Columnar: column name to a list of values",
                                "additionalProperties": {
                                    "type": "array",
                                    "items": {"type": ["number", "null"]},
                                },
                            },
                        ]
                    }
                },
            },
        ],
    },
    "MlflowResponse": {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": {"type": "number"}}},
    },
}

COLUMNS, VALUES = list(EXAMPLE_RECORD), list(EXAMPLE_RECORD.values())


def _body(media: str, schema: dict, **examples: Any) -> dict:
    return {media: {"schema": schema,
                    "examples": {k: {"value": v} for k, v in examples.items()}}}  # fmt: skip


PREDICT_BODY = {
    "required": True,
    "content": _body(
        JSON,
        _ref("PredictRequest"),
        records={"records": [EXAMPLE_RECORD]},
        entities={"entities": [{"customer_id": "c1"}]},
    ),
}
ONLINE_BODY = {
    "required": True,
    "content": _body(JSON, _ref("OnlineFeaturesRequest"),
                     one_entity={"features": ["loans:income", "loans:age"],
                                 "entities": [{"customer_id": "c1"}]}),
}  # fmt: skip
V2_BODY = {
    "required": True,
    "content": _body(
        JSON,
        _ref("V2InferenceRequest"),
        one_tensor_per_input={
            "id": "req-1",
            "inputs": [
                {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                for k, v in EXAMPLE_RECORD.items()
            ],
            "outputs": [{"name": OUTPUT}],
        },
        one_matrix_tensor={
            "inputs": [
                {"name": "input-0", "shape": [1, len(VALUES)], "datatype": "FP32", "data": [VALUES]}
            ],
        },
    ),
}
MLFLOW_BODY = {
    "required": True,
    "content": _body(
        JSON,
        _ref("MlflowRequest"),
        dataframe_split={"dataframe_split": {"columns": COLUMNS, "data": [VALUES]}},
        dataframe_records={"dataframe_records": [EXAMPLE_RECORD]},
        instances={"instances": [EXAMPLE_RECORD]},
        inputs={"inputs": {k: [v] for k, v in EXAMPLE_RECORD.items()}},
    )
    | _body(
        "text/csv",
        {"type": "string", "description": "A header line, then rows of numbers"},
        csv=",".join(COLUMNS) + "\n" + ",".join(map(str, VALUES)) + "\n",
    ),
}


def _get(summary: str, tag: str, ok: dict, shape: str | None = "Error", params=()) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {"200": ok, **_errors(shape)}}
    if params:
        op["parameters"] = list(params)
    return {"get": op}


def _v2_model(ready: bool, versioned: bool) -> dict:
    schema, summary = (
        ("V2ModelReady", "Whether the model (version) is live")
        if ready
        else ("V2Model", "The model's metadata: inputs and outputs")
    )
    params = [NAME, VERSION] if versioned else [NAME]
    return _get(summary, V2, _json(_ref(schema), "Found"), "V2Error", params)


HEADER_LENGTH = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "Binary tensor data: the length of the JSON header that starts the body",
    "schema": {"type": "integer", "minimum": 0},
}


def _v2_infer(versioned: bool) -> dict:
    return {
        "post": {
            "summary": "Score tensors: one per model input ([N] or [N, 1]), or one [N, d]",
            "description": "JSON whatever the Content-Type. With the binary tensor data "
            "extension the body is the JSON header (Inference-Header-Content-Length bytes) "
            "then the tensors' little-endian bytes; an output asked for with "
            "parameters.binary_data (or request parameters.binary_data_output) comes back "
            "the same way, as application/octet-stream.",
            "tags": [V2],
            "parameters": [*([NAME, VERSION] if versioned else [NAME]), HEADER_LENGTH],
            "requestBody": V2_BODY,
            "responses": {
                "200": {
                    "description": "Predictions, P(label = 1)",
                    "content": {
                        JSON: {"schema": _ref("V2InferenceResponse")},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"},
                            "description": "The JSON header, then the binary outputs",
                        },
                    },
                    "headers": {
                        "Inference-Header-Content-Length": {
                            "description": "Binary outputs: the length of the JSON header",
                            "schema": {"type": "integer"},
                        }
                    },
                },
                **_errors("V2Error"),
            },
        }
    }


def _invocations(named: bool) -> dict:
    params = (
        [NAME]
        if named
        else [
            {
                "name": "model",
                "in": "query",
                "required": False,
                "description": "The model, when several are deployed",
                "schema": {"type": "string", "example": "credit"},
            }
        ]
    )
    return {
        "post": {
            "summary": "MLflow scoring: dataframe_split, dataframe_records, instances, inputs or CSV",
            "tags": [MLFLOW],
            "parameters": params,
            "requestBody": MLFLOW_BODY,
            "responses": {
                "200": _json(_ref("MlflowResponse"), "Predictions, P(label = 1)"),
                **_errors("MlflowError"),
            },
        }
    }


NATIVE = "Native API"
MLFLOW = "MLflow scoring"
FILENAME = {"name": "filename", "in": "path", "required": True,
            "schema": {"type": "string", "example": "style.css"}}  # fmt: skip
FULL = {"name": "full", "in": "query", "required": False,
        "description": "1: re-hash every event, not only those after the last checkpoint",
        "schema": {"type": "string", "enum": ["0", "1"]}}  # fmt: skip
MODEL_NAME = {"name": "name", "in": "path", "required": True,
              "description": "A registered model's name",
              "schema": {"type": "string", "example": "credit"}}  # fmt: skip
ALIAS = {"name": "alias", "in": "path", "required": True,
         "schema": {"type": "string", "example": "champion"}}  # fmt: skip
REQUEST_ID = {"name": "request_id", "in": "path", "required": True,
              "description": "The request_id a prediction answered with",
              "schema": {"type": "string"}}  # fmt: skip

DECISION = {
    "name": "decision",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": 128},
}

QUARANTINE_REF = {
    "name": "quarantine",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": 200},
}


def _form(summary: str, required: list[str], optional: tuple[str, ...] = ()) -> dict:
    """A dashboard form post: answered with a redirect to the Data page and its outcome."""
    fields = {f: {"type": "string", "maxLength": 200} for f in [*required, *optional]}
    return {"post": {
        "summary": f"{summary} (a dashboard form)",
        "tags": ["Dashboard"],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": {"type": "object", "required": required, "properties": fields}}}},
        "responses": {"302": {"description": "Back to the Data page, with the outcome"}},
    }}  # fmt: skip


MODEL_PATH = [
    {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "A registered model",
        "schema": {"type": "string", "example": "credit"},
    },
    {
        "name": "version",
        "in": "path",
        "required": True,
        "description": "One of its versions",
        "schema": {"type": "integer", "minimum": 1, "example": 1},
    },
]
RUNS_QUERY = [
    {
        "name": "model",
        "in": "query",
        "required": False,
        "description": "Only this model's runs",
        "schema": {"type": "string", "maxLength": 200},
    },
    {
        "name": "compare",
        "in": "query",
        "required": False,
        "description": "Run ids to compare side by side, comma-separated (or repeated), at most 8",
        "schema": {"type": "string"},
    },
]
RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
ALIAS_FORM = {"post": {
    "summary": "Point an alias at this version, moving it from another (remove=1: remove "
               "the alias) (a dashboard form)",
    "tags": ["Dashboard"],
    "parameters": MODEL_PATH,
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "required": ["alias"], "properties": {
            "alias": {"type": "string", "maxLength": 200},
            "remove": {"type": "string", "enum": ["0", "1"]}}}}}},
    "responses": {"302": {"description": "Back to the version's page, with the outcome"},
                  **_errors(None)},
}}  # fmt: skip


PATHS: dict[str, Any] = {
    "/": _get("The dashboard (HTML); ?decision=ID shows one decision and its proof",
              "Dashboard", _text("The page", "text/html"), None, [DECISION]),
    "/check": {"get": {
        "summary": "Read every page of both stores (HTML), as `falaj check`",
        "tags": ["Dashboard"],
        "responses": {"200": _text("Both stores read clean", "text/html"),
                      "503": _text("A store is damaged; the page names it", "text/html")},
    }},
    "/data": _get("The Data page (HTML): tables and contracts, views, quality reports, "
                  "quarantine (?quarantine=BATCH or row ids shows its rows), online freshness",
                  "Dashboard", _text("The page", "text/html"), None, [QUARANTINE_REF]),
    "/data/quarantine/release": _form("Release held rows into their table (force=1: "
                                      "whatever the contract says)", ["ref"], ["force"]),
    "/data/quarantine/drop": _form("Drop held rows for good", ["ref"]),
    "/data/materialize": _form("Materialize a view into the online store", ["view"]),
    "/models": _get("The Models page (HTML): every version with its status, aliases, gates "
                    "and hold-out score", "Dashboard", _text("The page", "text/html"), None),
    "/models/{name}/{version}": _get(
        "A version's page (HTML): metrics, gates, fairness and calibration charts, "
        "robustness, lineage, inputs, aliases", "Dashboard", _text("The page", "text/html"),
        None, MODEL_PATH),
    "/models/{name}/{version}/alias": ALIAS_FORM,
    "/runs/train": {"post": {
        "summary": "Train from a spec of the workspace file, as `falaj train --spec` (a "
                   "dashboard form)",
        "tags": ["Dashboard"],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": {"type": "object", "required": ["spec"],
                       "properties": {"spec": {"type": "string", "maxLength": 200}}}}}},
        "responses": {"302": {"description": "To the new version's page, or back to the "
                              "Runs page with the error"}, **_errors(None)},
    }},
    "/models/{name}/{version}/card": _get("The version's model card, a standalone HTML page",
                                          "Dashboard", _text("The card", "text/html"), None,
                                          MODEL_PATH),
    "/models/{name}/{version}/card.md": _get("The version's model card in Markdown (a download)",
                                             "Dashboard", _text("The card", "text/markdown"),
                                             None, MODEL_PATH),
    "/runs": _get("Training runs (HTML), newest first; ?model= filters, ?compare=ID,ID shows "
                  "runs side by side", "Dashboard", _text("The page", "text/html"), None,
                  RUNS_QUERY),
    "/runs/{run_id}": _get("One run (HTML): parameters, metrics and, for a search, its trials "
                           "with their scores charted", "Dashboard", _text("The page", "text/html"),
                           None, [RUN_ID]),
    "/static/{filename}": _get("The dashboard's static files", "Dashboard",
                               _text("The file", "text/css"), None, [FILENAME]),
    "/healthz": {"get": {
        "summary": "Liveness, the live deployments and any slot out of service",
        "tags": [NATIVE],
        "responses": {
            "200": _json(_ref("Health"), "Every live slot serves"),
            "503": _json({"oneOf": [_ref("Health"), _ref("Error")]},
                         "A live slot cannot serve, or a store cannot be read"),
        },
    }},
    "/metrics": {"get": {
        "summary": "Live metrics in the Prometheus text format: requests and latency per "
        "model, version, variant and status, rows scored, decision log commits, drift per "
        "feature, open alerts, job states",
        "tags": [NATIVE],
        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/api/openapi.json": _get("This document", NATIVE, _json({"type": "object"}, "OpenAPI 3.1")),
    "/api/v1/models": _get("Registered model versions", NATIVE, _json(_ref("Models"), "Versions")),
    "/api/v1/tables": _get("Ingested tables", NATIVE, _json(_ref("Tables"), "Tables")),
    "/api/v1/models/resolve": _get(
        "A registered version by any model reference", NATIVE,
        _json({"type": "object"}, "The version's record and its aliases"),
        params=[{"name": "ref", "in": "query", "required": True,
                 "description": "models:/NAME/VERSION, models:/NAME@ALIAS, NAME@VERSION, "
                                "NAME@ALIAS or NAME (the latest)",
                 "schema": {"type": "string", "example": "models:/credit@champion"}}]),
    "/api/v1/models/{name}/aliases/{alias}": {
        "put": {
            "summary": "Point an alias at a version (audited)",
            "tags": [NATIVE],
            "parameters": [MODEL_NAME, ALIAS],
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["version"],
                "properties": {"version": {"type": "integer", "minimum": 1}}}}}},
            "responses": {"200": _json({"type": "object"}, "The alias and the version it "
                                       "named before"), **_errors("Error")},
        },
        "delete": {
            "summary": "Remove an alias (audited)",
            "tags": [NATIVE],
            "parameters": [MODEL_NAME, ALIAS],
            "responses": {"200": _json({"type": "object"}, "The alias removed"),
                          **_errors("Error")},
        },
    },
    "/api/v1/runs": _get(
        "Training runs: searches, their trials and final fits, newest first", NATIVE,
        _json({"type": "object", "properties": {"runs": {"type": "array"}}}, "Runs"),
        params=[{"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "search", "in": "query", "required": False,
                 "description": "a search run's id: its trials and its final fit",
                 "schema": {"type": "string"}}]),
    "/api/v1/audit/verify": _get("Verify the audit chain", NATIVE,
                                 _json(_ref("AuditVerification"), "The result"), params=[FULL]),
    "/api/v1/decisions/{request_id}": _get(
        "A logged decision and the audit event that commits to it", NATIVE,
        _json(_ref("Decision"), "The decision"), params=[REQUEST_ID]),
    "/api/v1/models/{name}/predict": {"post": {
        "summary": "Score records with the live version of a deployed model",
        "tags": [NATIVE],
        "parameters": [NAME],
        "requestBody": PREDICT_BODY,
        "responses": {
            "200": _json(_ref("PredictResponse"), "Predictions, P(label = 1)"),
            **_errors("Error"),
        },
    }},
    "/api/v1/features/online": {"post": {
        "summary": "The latest materialized feature values of entities (the online store)",
        "tags": [NATIVE],
        "requestBody": ONLINE_BODY,
        "responses": {
            "200": _json(_ref("OnlineFeaturesResponse"), "Values and a status per value"),
            **_errors("Error"),
        },
    }},
    "/v2": _get("Server metadata", V2, _json(_ref("V2Server"), "Metadata"), "V2Error"),
    "/v2/health/live": _get("Server liveness", V2, _json(_ref("V2Live"), "Live"), "V2Error"),
    "/v2/health/ready": _get("Server readiness: the stores can be read", V2,
                             _json(_ref("V2Ready"), "Ready"), "V2Error"),
    "/v2/models/{name}": _v2_model(ready=False, versioned=False),
    "/v2/models/{name}/versions/{version}": _v2_model(ready=False, versioned=True),
    "/v2/models/{name}/ready": _v2_model(ready=True, versioned=False),
    "/v2/models/{name}/versions/{version}/ready": _v2_model(ready=True, versioned=True),
    "/v2/models/{name}/infer": _v2_infer(versioned=False),
    "/v2/models/{name}/versions/{version}/infer": _v2_infer(versioned=True),
    "/ping": _get("MLflow liveness: the stores can be read", MLFLOW, _text("Ready")),
    "/health": _get("MLflow liveness (the same as /ping)", MLFLOW, _text("Ready")),
    "/invocations": _invocations(named=False),
    "/models/{name}/invocations": _invocations(named=True),
}  # fmt: skip

# -- releases (canary, shadow, A/B)
RELEASE_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["version", "strategy"],
                "properties": {
                    "version": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "The candidate version",
                    },
                    "strategy": {"type": "string", "enum": ["canary", "shadow", "ab"]},
                    "percent": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 100,
                        "description": "The candidate's share of keys (canary, ab) or of "
                        "requests copied (shadow)",
                    },
                    "force": {
                        "type": "boolean",
                        "description": "Release a version its gates rejected",
                    },
                    "policy": {
                        "type": "object",
                        "description": "Automatic promotion and rollback",
                        "properties": {
                            "min_requests": {"type": "integer", "minimum": 1},
                            "after": {"type": "string", "example": "30m"},
                            "max_error_rate": {"type": "number"},
                            "max_p99_ms": {"type": "number"},
                            "max_psi": {"type": "number"},
                            "min_metric_delta": {"type": "number"},
                        },
                    },
                },
                "example": {"version": 2, "strategy": "canary", "percent": 10},
            }
        }
    },
}
RELEASE_OUT = {
    "type": "object",
    "required": ["name", "live_slot", "live_version", "release"],
    "properties": {"release": {"type": ["object", "null"]}, "history": {"type": "array"}},
}


def _release_action(summary: str) -> dict:
    return {
        "post": {
            "summary": summary,
            "tags": [NATIVE],
            "parameters": [MODEL_NAME],
            "responses": {"200": _json({"type": "object"}, "The outcome"), **_errors("Error")},
        }
    }


def _release_form(summary: str, body: dict | None = None) -> dict:
    op = {
        "summary": f"{summary} (a dashboard form)",
        "tags": ["Dashboard"],
        "parameters": [MODEL_NAME],
        "responses": {
            "302": {"description": "Back to the Releases page, with the outcome"},
            **_errors(None),
        },
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": body}},
        }
    return {"post": op}


RELEASE_FORM_FIELDS = (
    "version",
    "strategy",
    "percent",
    "force",
    "auto",
    "min_requests",
    "after",
    "max_error_rate",
    "max_p99_ms",
    "max_psi",
    "min_metric_delta",
)
PATHS.update({
    "/releases": _get("The Releases page (HTML): deployments, their active release with a "
                      "report per variant, start form, promote and rollback buttons",
                      "Dashboard", _text("The page", "text/html"), None),
    "/releases/{name}/start": _release_form("Start a release", {
        "type": "object", "required": ["version", "strategy"],
        "properties": {f: {"type": "string", "maxLength": 40} for f in RELEASE_FORM_FIELDS}}),
    "/releases/{name}/promote": _release_form("Promote the active release"),
    "/releases/{name}/rollback": _release_form("Roll back the active release"),
    "/api/v1/releases": _get("Every deployment with its live version and active release",
                             NATIVE, _json({"type": "object"}, "Deployments")),
    "/api/v1/models/{name}/release": {
        "get": {"summary": "A deployment, its active release with a report per variant, and "
                           "past releases", "tags": [NATIVE], "parameters": [MODEL_NAME],
                "responses": {"200": _json(RELEASE_OUT, "The status"), **_errors("Error")}},
        "post": {"summary": "Start a canary, shadow or A/B release of a candidate version "
                            "(audited; 409 while another is active)", "tags": [NATIVE],
                 "parameters": [MODEL_NAME], "requestBody": RELEASE_BODY,
                 "responses": {"201": _json(RELEASE_OUT, "The status, with the new release"),
                               **_errors("Error")}},
    },
    "/api/v1/models/{name}/release/promote": _release_action(
        "Promote the active release: the candidate's slot becomes live (audited)"),
    "/api/v1/models/{name}/release/rollback": _release_action(
        "Roll back the active release: the candidate stops receiving traffic (audited)"),
    "/api/v1/models/{name}/release/evaluate": _release_action(
        "Judge the model's automatic release now: promote, roll back or wait (audited)"),
})  # fmt: skip


PIPELINE = {"name": "name", "in": "path", "required": True,
            "description": "A pipeline declared in the workspace",
            "schema": {"type": "string", "example": "retrain"}}  # fmt: skip
RUN_ID = {"name": "run_id", "in": "path", "required": True, "description": "A pipeline run's id",
          "schema": {"type": "string", "example": "r20261130-1a2b3c4d"}}  # fmt: skip
PIPELINE_RUN = {"type": "object", "required": ["id", "pipeline", "status"]}


def _pipeline_form(summary: str, param: dict, body: dict | None = None) -> dict:
    op = {"summary": f"{summary} (a dashboard form)", "tags": ["Dashboard"],
          "parameters": [param],
          "responses": {"302": {"description": "To the run's page, with the outcome"},
                        **_errors(None)}}  # fmt: skip
    if body is not None:
        op["requestBody"] = {"required": False, "content": {
            "application/x-www-form-urlencoded": {"schema": body}}}  # fmt: skip
    return {"post": op}


def _pipeline_action(summary: str, body: dict | None = None) -> dict:
    op = {"summary": summary, "tags": [NATIVE], "parameters": [RUN_ID],
          "responses": {"200": _json(PIPELINE_RUN, "The run with its steps"),
                        **_errors("Error")}}  # fmt: skip
    if body is not None:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": body}}}
    return {"post": op}


PATHS.update({
    "/pipelines": _get("The Pipelines page (HTML): pipelines with a Run button, their runs "
                       "and the scheduled jobs", "Dashboard", _text("The page", "text/html"),
                       None),
    "/pipelines/runs/{run_id}": _get("A pipeline run's page (HTML): its step timeline, "
                                     "Approve, Reject and Cancel buttons", "Dashboard",
                                     _text("The page", "text/html"), None, params=[RUN_ID]),
    "/pipelines/{name}/run": _pipeline_form("Start a run of a pipeline", PIPELINE),
    "/pipelines/runs/{run_id}/approve": _pipeline_form(
        "Approve or reject a run's waiting approval step", RUN_ID,
        {"type": "object", "properties": {"reject": {"type": "string", "enum": ["0", "1"]},
                                          "note": {"type": "string", "maxLength": 500}}}),
    "/pipelines/runs/{run_id}/cancel": _pipeline_form("Cancel an active run", RUN_ID),
    "/api/v1/pipelines": _get("The workspace's pipelines: steps, triggers, latest run", NATIVE,
                              _json({"type": "array"}, "Pipelines")),
    "/api/v1/pipelines/{name}/runs": {"post": {
        "summary": "Start a run of a pipeline (audited; 409 while one is active)",
        "tags": [NATIVE], "parameters": [PIPELINE],
        "responses": {"201": _json(PIPELINE_RUN, "The queued run"), **_errors("Error")}}},
    "/api/v1/pipelines/runs": _get(
        "Pipeline runs, newest first", NATIVE, _json({"type": "array"}, "Runs"),
        params=[{"name": "pipeline", "in": "query", "required": False,
                 "schema": {"type": "string"}}]),
    "/api/v1/pipelines/runs/{run_id}": _get("A pipeline run with its steps", NATIVE,
                                            _json(PIPELINE_RUN, "The run"), params=[RUN_ID]),
    "/api/v1/pipelines/runs/{run_id}/approve": _pipeline_action(
        "Approve (or reject) the run's step waiting for a person (audited)",
        {"type": "object", "properties": {"reject": {"type": "boolean"},
                                          "note": {"type": "string", "maxLength": 500}}}),
    "/api/v1/pipelines/runs/{run_id}/cancel": _pipeline_action(
        "Cancel an active run: its unfinished steps are skipped (audited)"),
    "/api/v1/jobs": _get("Scheduled jobs: trigger, next run time, last state", NATIVE,
                         _json({"type": "array"}, "Jobs")),
})  # fmt: skip


MONITOR_MODEL = {"name": "name", "in": "path", "required": True,
                 "description": "A registered model", "schema": {"type": "string",
                                                                 "example": "credit_risk"}}  # fmt: skip
ALERT_ID = {"name": "alert_id", "in": "path", "required": True, "description": "An alert's id",
            "schema": {"type": "integer", "minimum": 0, "example": 1}}  # fmt: skip
MONITOR_THRESHOLDS = {"type": "object", "additionalProperties": False, "properties": {
    k: {"type": "number", "minimum": 0} for k in ("psi", "prediction_psi", "latency_p99_ms",
                                                  "error_rate", "auc_drop", "min_rows")}}  # fmt: skip
MONITOR_CONFIG = {"type": "object", "required": ["model", "thresholds"]}


def _json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {JSON: {"schema": schema}}}


PATHS.update({
    "/monitoring": _get("The Monitoring page (HTML): per model, snapshots per variant and "
                        "window, per-input drift, PSI over recent passes, open alerts",
                        "Dashboard", _text("The page", "text/html"), None),
    "/monitoring/run": {"post": {
        "summary": "Run a monitoring pass now (a dashboard form)", "tags": ["Dashboard"],
        "responses": {"302": {"description": "Back to the Monitoring page, with the outcome"},
                      **_errors(None)}}},
    "/monitoring/alerts/{alert_id}/ack": {"post": {
        "summary": "Acknowledge an open alert (a dashboard form)", "tags": ["Dashboard"],
        "parameters": [ALERT_ID],
        "responses": {"302": {"description": "Back to the Monitoring page, with the outcome"},
                      **_errors(None)}}},
    "/api/v1/monitoring": _get("Every monitored model's latest snapshots", NATIVE,
                               _json({"type": "object"}, "Models")),
    "/api/v1/monitoring/run": {"post": {
        "summary": "Run a monitoring pass: drift, latency and live metrics per variant and "
                   "window, stored; alerts opened or resolved (audited)", "tags": [NATIVE],
        "requestBody": _json_body({"type": "object", "properties": {
            "model": {"type": "string"},
            "window": {"type": "string", "example": "1h,10000"}}}, required=False),
        "responses": {"200": _json({"type": "object"}, "The snapshots and alert changes"),
                      **_errors("Error")}}},
    "/api/v1/monitoring/alerts": _get(
        "Alerts, newest first (open ones unless all=1)", NATIVE,
        _json({"type": "object"}, "Alerts"),
        params=[{"name": "all", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["0", "1"]}},
                {"name": "since", "in": "query", "required": False,
                 "schema": {"type": "string", "example": "2026-01-01T00:00:00"}},
                {"name": "model", "in": "query", "required": False,
                 "schema": {"type": "string"}}]),
    "/api/v1/monitoring/alerts/{alert_id}/ack": {"post": {
        "summary": "Acknowledge an open alert (audited)", "tags": [NATIVE],
        "parameters": [ALERT_ID],
        "responses": {"200": _json({"type": "object"}, "The alert"), **_errors("Error")}}},
    "/api/v1/monitoring/webhook": {
        "get": {"summary": "The alert webhook URL", "tags": [NATIVE],
                "responses": {"200": _json({"type": "object"}, "The URL"), **_errors("Error")}},
        "put": {"summary": "Set the alert webhook: loopback or private LAN http(s) only; "
                           "empty turns it off (audited)", "tags": [NATIVE],
                "requestBody": _json_body({"type": "object", "properties": {
                    "url": {"type": "string", "example": "http://127.0.0.1:9000/alerts"}}}),
                "responses": {"200": _json({"type": "object"}, "The URL"),
                              **_errors("Error")}}},
    "/api/v1/monitoring/models/{name}": _get(
        "A model's latest snapshots, PSI history, active alerts and config", NATIVE,
        _json({"type": "object"}, "The status"), params=[MONITOR_MODEL]),
    "/api/v1/monitoring/models/{name}/config": {
        "get": {"summary": "A model's alert thresholds and outcome join", "tags": [NATIVE],
                "parameters": [MONITOR_MODEL],
                "responses": {"200": _json(MONITOR_CONFIG, "The config"), **_errors("Error")}},
        "put": {"summary": "Set some of a model's alert thresholds (audited)", "tags": [NATIVE],
                "parameters": [MONITOR_MODEL], "requestBody": _json_body(MONITOR_THRESHOLDS),
                "responses": {"200": _json(MONITOR_CONFIG, "The config"),
                              **_errors("Error")}}},
    "/api/v1/monitoring/models/{name}/outcomes": {"put": {
        "summary": "Name the table a model's outcomes arrive in and how they join its "
                   "decisions: by request id, or by entity and timestamp (audited)",
        "tags": [NATIVE], "parameters": [MONITOR_MODEL],
        "requestBody": _json_body({"type": "object", "required": ["table", "label"],
                                   "properties": {k: {"type": "string"} for k in (
                                       "table", "label", "request_id", "entity",
                                       "timestamp")}}),
        "responses": {"200": _json(MONITOR_CONFIG, "The config"), **_errors("Error")}}},
})  # fmt: skip


PATHS.update(AUDIT_PATHS)  # checkpoints, proofs, the Audit page (webui/audit.py)
PATHS.update(AUTH_PATHS)  # sign-in, enrolment, users and tokens (webui/auth.py)
PATHS.update(SECURITY_PATHS)  # the self-test's API and page (webui/security.py)
PATHS.update(COMPLIANCE_PATHS)  # consent, data subjects, reviews (webui/compliance.py)
PATHS.update(OPS_PATHS)  # backups (webui/ops.py)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Falaj",
            "version": appliance_pkg.__version__,
            "description": "The appliance's HTTP API: the native JSON API, the Open Inference "
            "Protocol (KServe V2 REST) and MLflow's scoring format, over the same models.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }


@bp.get("/api/openapi.json")
@needs("model.read")
def openapi_json():
    return jsonify(document())
