"""``GET /metrics``: the appliance's live metrics in the Prometheus text format (see
``appliance.monitoring.metrics``), and ``scored``, which the scoring views of every
protocol go through so each request is counted once, with its outcome and latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app

from appliance.errors import FalajError
from appliance.monitoring.metrics import CONTENT_TYPE, status_of
from webui.auth import needs

bp = Blueprint("metrics", __name__)

T = TypeVar("T")


@bp.get("/metrics")
@needs("monitor.read")
def metrics():
    """Answers anyone on the network the server listens on, as Prometheus expects."""
    return Response(current_app.extensions["falaj"].metrics.text(), content_type=CONTENT_TYPE)


def scored(name: str, call: Callable[[], T]) -> T:
    """Run a scoring view's work and count it: ``ok`` with the version and variant that
    answered and the rows scored, or the error's class (4xx, 5xx). ``call`` returns the
    service's answer, or a tuple starting with it."""
    return count(current_app.extensions["falaj"], name, call)


def count(app: Any, name: str, call: Callable[[], T]) -> T:
    """``scored`` for the appliance ``app``, outside Flask (the gRPC service)."""
    t0 = time.perf_counter()
    try:
        result = call()
    except Exception as exc:
        status = status_of(exc.status if isinstance(exc, FalajError) else 500)
        # a name nobody deployed is not a label: unbounded names would grow the registry
        known = name in app.serving.server.deployments()
        app.metrics.request(name if known else "", None, "", status, time.perf_counter() - t0)
        raise
    answered(app, name, result[0] if isinstance(result, tuple) else result, t0)
    return result


def answered(app: Any, name: str, answer: dict, t0: float) -> None:
    """Count a scoring request that succeeded (``webui.fastpath`` counts its own here;
    its failures are counted by ``scored`` in Flask's view)."""
    app.metrics.request(name, answer["version"], answer.get("variant", "live"), "ok",
                        time.perf_counter() - t0, len(answer["predictions"]))  # fmt: skip
