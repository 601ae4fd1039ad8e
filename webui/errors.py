"""One error path: a FalajError (or an HTTP error) renders as JSON for API clients and
as an HTML page for people, with its status. Bad input is a 4xx, never a 500.

Only valid JSON goes in or out: request bodies nested deeper than ``MAX_JSON_DEPTH`` are
refused with a 400 (a deeper document would exhaust Python's recursion limit), and a
response holding NaN or Infinity, which JSON cannot carry, is never sent. An unexpected
exception is logged with its traceback by Flask and answered with a plain JSON 500; no
error message ever shows a file path on the server.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from flask import Flask, current_app, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError

from appliance.errors import BadInput, FalajError

# MLflow's scoring server answers errors as {"error_code", "message"} with these codes.
MLFLOW_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 405: "ENDPOINT_NOT_FOUND",
                409: "INVALID_STATE", 503: "TEMPORARILY_UNAVAILABLE"}  # fmt: skip

MAX_JSON_DEPTH = 100  # no request this API takes comes near it; a V2 tensor nests by rank
MAX_MESSAGE = 4096  # characters of an error message; the rest is cut

INTERNAL_ERROR = "internal error: the server log has the details"


def _too_deep() -> BadInput:
    return BadInput(f"request body: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _depth_ok(value: Any) -> bool:
    """Whether no array or object in ``value`` lies deeper than ``MAX_JSON_DEPTH``."""
    stack = [(value, 1)]
    while stack:  # iterative, so the check itself has no recursion limit
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, list | dict):
                stack.append((child, depth + 1))
    return True


def _openers(s: str | bytes) -> int:
    """An upper bound on the nesting depth, counted at C speed."""
    if isinstance(s, str):
        return s.count("[") + s.count("{")
    return s.count(b"[") + s.count(b"{")


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing what is not JSON: ``dumps`` raises ``ValueError`` on NaN and
    Infinity instead of writing them (a bug upstream, answered as a logged 500 rather
    than as a body no client can parse), and ``loads`` raises ``BadInput`` for documents
    nested deeper than ``MAX_JSON_DEPTH``, which would otherwise end in a RecursionError
    here or in any code that walks the value."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise _too_deep() from None
        except json.JSONDecodeError as e:  # say where, which get_json(silent=True) would not
            raise BadInput(
                f"request body: expected JSON; {e.msg} at line {e.lineno}, column {e.colno}"
            ) from None
        except UnicodeDecodeError:
            raise BadInput(
                "request body: expected JSON in UTF-8 (or UTF-16/32 with a BOM)"
            ) from None
        except ValueError:  # the only other: Python's limit on the digits of an integer
            raise BadInput(
                f"request body: a number has more than {sys.get_int_max_str_digits()} digits"
            ) from None
        if isinstance(value, list | dict) and _openers(s) > MAX_JSON_DEPTH and not _depth_ok(value):
            raise _too_deep()
        return value


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/healthz", "/ping", "/health")) or (
        request.accept_mimetypes.best == "application/json"
    )


# An absolute path with at least two parts, e.g. /var/lib/falaj/control.db.
_PATH = re.compile(r"(?<![\w.~/-])/(?:[^\s/'\"`,;()\[\]{}<>|]+/)+[^\s/'\"`,;()\[\]{}<>|]*")


def redact(message: str) -> str:
    """``message`` without server file paths: a path under the home becomes
    ``FALAJ_HOME/...``, any other one its last part. URL paths of this app stay."""
    home = getattr(current_app.extensions.get("falaj"), "home", None)
    home = str(home).rstrip("/") if home else ""
    if home and home in message:  # first, as a home path may hold spaces
        message = message.replace(home, "FALAJ_HOME")
    routes = {r.rule.split("/")[1] for r in current_app.url_map.iter_rules()} - {""}

    def replace(match: re.Match) -> str:
        path = match.group(0)
        if path.split("/")[1] in routes:
            return path
        return os.path.basename(path.rstrip("/")) or "/"

    message = _PATH.sub(replace, message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "… (cut)"
    return message


def render(status: int, message: str, kind: str):
    message = redact(message)
    path = request.path
    if path == "/v2" or path.startswith("/v2/"):  # the Open Inference Protocol's error shape
        return jsonify({"error": message}), status
    if path.endswith("/invocations"):
        code = MLFLOW_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        return jsonify({"error_code": code, "message": message}), status
    if wants_json():
        return jsonify({"error": {"type": kind, "message": message}}), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    app.json = StrictJSONProvider(app)

    @app.errorhandler(FalajError)
    def falaj_error(exc: FalajError):
        return render(exc.status, exc.message, type(exc).__name__)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return render(exc.code or 500, exc.description or exc.name, exc.name.replace(" ", ""))

    # The catch-all: Flask logs any unhandled exception with its traceback (or, when
    # testing, re-raises it) and then calls this handler. The body says nothing of the
    # exception, so no traceback, path or value from the server leaks out.
    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        return render(500, INTERNAL_ERROR, "InternalServerError")
