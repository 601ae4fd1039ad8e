"""One error path: a FalajError (or an HTTP error) renders as JSON for API clients and
as an HTML page for people, with its status. Bad input is a 4xx, never a 500."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from appliance.errors import FalajError

# MLflow's scoring server answers errors as {"error_code", "message"} with these codes.
MLFLOW_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 409: "INVALID_STATE",
                503: "TEMPORARILY_UNAVAILABLE"}  # fmt: skip


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/healthz", "/ping", "/health")) or (
        request.accept_mimetypes.best == "application/json"
    )


def render(status: int, message: str, kind: str):
    path = request.path
    if path == "/v2" or path.startswith("/v2/"):  # the Open Inference Protocol's error shape
        return jsonify({"error": message}), status
    if path.endswith("/invocations"):
        return jsonify(
            {"error_code": MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": message}
        ), status
    if wants_json():
        return jsonify({"error": {"type": kind, "message": message}}), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(FalajError)
    def falaj_error(exc: FalajError):
        return render(exc.status, exc.message, type(exc).__name__)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render(exc.code or 500, exc.description or exc.name, exc.name.replace(" ", ""))
