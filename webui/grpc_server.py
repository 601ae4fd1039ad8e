"""The Open Inference Protocol (KServe V2) over gRPC: ``inference.GRPCInferenceService``
on its own port (the ``grpc_port`` setting), in the same process and over the same model
slots as the HTTP API, so ``tritonclient.grpc`` and KServe's clients work unchanged.

The tensor checks and the records they become are the HTTP handlers' own
(``webui.protocols``); a ``FalajError`` becomes the gRPC status matching its HTTP one:
400 INVALID_ARGUMENT, 404 NOT_FOUND, 409 FAILED_PRECONDITION, 503 UNAVAILABLE.
"""

from __future__ import annotations

import logging
import math
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

import appliance as appliance_pkg
from appliance.auth import Actor, Unauthenticated, require
from appliance.errors import BadInput, FalajError
from webui import metrics, protocols
from webui.auth import bearer_token
from webui.errors import INTERNAL_ERROR
from webui.v2proto import predict_v2_pb2 as pb
from webui.v2proto import predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
         409: grpc.StatusCode.FAILED_PRECONDITION, 503: grpc.StatusCode.UNAVAILABLE,
         401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}  # fmt: skip
PERMISSIONS = {"ModelInfer": "model.predict"}  # every other call: model.read
MAX_MESSAGE = 64 * 1024 * 1024  # bytes of one request or answer

# Where each datatype's values sit in InferTensorContents (FP16 only travels raw).
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # fmt: skip


def _actor(app, context) -> Actor:
    """The API token in the call's ``authorization: Bearer <token>`` metadata."""
    token = bearer_token(dict(context.invocation_metadata()).get("authorization"))
    actor = app.auth.token_actor(token) if token else None
    if actor is None:
        raise Unauthenticated("send metadata authorization: Bearer <token> with a valid token")
    return actor


def _guard(method):
    """Answers a FalajError with its gRPC status and message, anything else with
    INTERNAL (logged with its traceback, the message saying nothing of it)."""

    def call(self, request, context):
        try:
            require(_actor(self.app, context), PERMISSIONS.get(method.__name__, "model.read"))
            return method(self, request, context)
        except FalajError as exc:
            context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception:
            log.exception("gRPC %s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)

    call.__name__ = method.__name__
    return call


def _tensors(request) -> list[protocols.Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadInput(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs "
            "(give one per input, or none)"
        )
    tensors = []
    for i, t in enumerate(request.inputs):
        where = f"inputs[{i}]"
        shape = protocols.check_shape(list(t.shape), where)
        datatype = protocols.check_datatype(t.datatype, where)
        count = math.prod(shape)
        if raw:
            values = protocols.decode_raw(datatype, raw[i], count, where)
        elif datatype == "FP16":
            raise BadInput(f"{where}: FP16 tensors travel in raw_input_contents only")
        else:
            values = list(getattr(t.contents, CONTENTS[datatype]))
        tensors.append(protocols.tensor(t.name, shape, datatype, values, where))
    return tensors


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    @_guard
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @_guard
    def ServerReady(self, request, context):
        self.app.serving.server.refresh()  # raises (503) if the stores cannot be read
        return pb.ServerReadyResponse(ready=True)

    @_guard
    def ModelReady(self, request, context):
        try:
            protocols.live_model(self.app.serving.server, request.name, request.version)
        except FalajError as exc:
            if exc.status != 404:
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_guard
    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(
            name="falaj", version=appliance_pkg.__version__, extensions=[]
        )

    @_guard
    def ModelMetadata(self, request, context):
        model = protocols.live_model(self.app.serving.server, request.name, request.version)
        meta = protocols.model_metadata(request.name, model)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    @_guard
    def ModelInfer(self, request, context):
        name = request.model_name
        actor = _actor(self.app, context)  # no credential: refused before it is counted

        def infer() -> dict:
            model = protocols.live_model(self.app.serving.server, name, request.model_version)
            for i, out in enumerate(request.outputs):
                protocols.check_output(out.name, i)
            records = protocols.tensor_records(_tensors(request), model.inputs)
            return self.app.serving.predict(name, records, actor, where="inputs")

        result = metrics.count(self.app, name, infer)  # as the HTTP protocols count theirs
        predictions = result["predictions"]
        raw = np.asarray(predictions, dtype=protocols.DTYPES[protocols.OUTPUT_DATATYPE])
        return pb.ModelInferResponse(
            model_name=name,
            model_version=str(result["version"]),
            id=request.id or result["request_id"],
            parameters={"receipt": pb.InferParameter(string_param=result["receipt"])},
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name=protocols.OUTPUT,
                    datatype=protocols.OUTPUT_DATATYPE,
                    shape=[len(predictions)],
                )
            ],
            raw_output_contents=[raw.tobytes()],
        )


def create_server(
    app, host: str, port: int, threads: int, tls: tuple[Path, Path] | None = None
) -> tuple[grpc.Server, int]:
    """A gRPC server bound to ``host:port`` (not yet started) and the port it got;
    a port that cannot be bound is a FalajError naming it. With ``tls`` (certificate and
    key files, those of the HTTPS server) it speaks only TLS."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="falaj-grpc"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),  # a taken port is an error, never a shared one
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(app), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            pair = (tls[1].read_bytes(), tls[0].read_bytes())
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
    except RuntimeError:
        bound = 0
    if not bound:
        server.stop(None)
        raise FalajError(f"cannot listen for gRPC on {address}; choose another --grpc-port")
    return server, bound
