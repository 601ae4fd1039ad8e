"""The Monitoring page and its JSON API: per model, the last pass's snapshots per variant
and window (requests, latency, prediction drift, live AUC), a per-input drift table with
the four measures, PSI over recent passes as a server-side SVG chart, and the open
alerts with an Acknowledge button. Buttons post to the service the CLI calls, then
redirect back (post/redirect/get) with one line of outcome. Nothing is computed on a
page view: passes are run by ``falaj monitor run``, the API or the page's button."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request
from markupsafe import Markup

from appliance.errors import BadInput, FalajError
from webui import charts
from webui.api import appliance, back, json_body, request_actor
from webui.auth import needs

bp = Blueprint("monitoring", __name__)

MAX_LINES = 3  # features drawn in the PSI chart beside the prediction: the most drifted
THRESHOLDS = ("psi", "prediction_psi", "latency_p99_ms", "error_rate", "auc_drop", "min_rows")


def _text(body: dict[str, Any], key: str, where: str = "request body") -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise BadInput(f'{where}: field "{key}" must be a string')
    return v


# -- JSON API ----------------------------------------------------------------------


@bp.get("/api/v1/monitoring")
@needs("monitor.read")
def api_overview():
    return jsonify({"models": appliance().monitoring.overview(request_actor())})


@bp.post("/api/v1/monitoring/run")
@needs("monitor.configure")
def api_run():
    body = json_body() if request.content_length else {}
    r = appliance().monitoring.run_pass(request_actor(), model=_text(body, "model"),
                                        window=_text(body, "window"))  # fmt: skip
    return jsonify(r)


@bp.get("/api/v1/monitoring/alerts")
@needs("monitor.read")
def api_alerts():
    args = request.args
    rows = appliance().monitoring.alerts(
        request_actor(), open_only=args.get("all") not in ("1", "true"),
        since=args.get("since"), model=args.get("model"),
    )  # fmt: skip
    return jsonify({"alerts": rows})


@bp.post("/api/v1/monitoring/alerts/<int:alert_id>/ack")
@needs("monitor.configure")
def api_ack(alert_id: int):
    return jsonify(appliance().monitoring.acknowledge(alert_id, request_actor()))


@bp.get("/api/v1/monitoring/webhook")
@needs("monitor.read")
def api_webhook():
    return jsonify({"webhook": appliance().monitoring.webhook_url(request_actor())})


@bp.put("/api/v1/monitoring/webhook")
@needs("monitor.configure")
def api_set_webhook():
    url = _text(json_body(), "url")
    return jsonify(appliance().monitoring.set_webhook(url, request_actor()))


@bp.get("/api/v1/monitoring/models/<name>")
@needs("monitor.read")
def api_status(name: str):
    return jsonify(appliance().monitoring.status(name, request_actor()))


@bp.get("/api/v1/monitoring/models/<name>/config")
@needs("monitor.read")
def api_config(name: str):
    return jsonify(appliance().monitoring.config(name, request_actor()))


@bp.put("/api/v1/monitoring/models/<name>/config")
@needs("monitor.configure")
def api_configure(name: str):
    body = json_body()
    unknown = [k for k in body if k not in THRESHOLDS]
    if unknown:
        raise BadInput(f'request body: field "{unknown[0]}" is not a threshold '
                       f"({', '.join(THRESHOLDS)})")  # fmt: skip
    return jsonify(appliance().monitoring.configure(name, request_actor(), **body))


@bp.put("/api/v1/monitoring/models/<name>/outcomes")
@needs("monitor.configure")
def api_outcomes(name: str):
    body = json_body()
    table, label = _text(body, "table"), _text(body, "label")
    if not table or not label:
        raise BadInput('request body: fields "table" and "label" are required')
    r = appliance().monitoring.set_outcomes(
        name, request_actor(), table, label, request_id=_text(body, "request_id"),
        entity=_text(body, "entity"), timestamp=_text(body, "timestamp"),
    )  # fmt: skip
    return jsonify(r)


# -- the page ------------------------------------------------------------------------


def psi_chart(history: list[dict[str, Any]], title: str, threshold: float = 0.2) -> Markup:
    """PSI over recent passes: the prediction's and the most drifted inputs' lines, and
    the alert threshold dashed."""
    latest = history[-1]["psi"] if history else {}
    top = sorted(latest, key=lambda f: -(latest[f] or 0))[:MAX_LINES]
    series: dict[str, list[float | None]] = {"prediction": [h["prediction_psi"] for h in history]}
    for f in top:
        series[f] = [h["psi"].get(f) for h in history]
    values = [charts._num(v) for vs in series.values() for v in vs]
    top_y = threshold * 1.25
    f = charts.Frame(*charts._range([*values, top_y], 0.0, None), 0.5, max(len(history), 1) + 0.5)
    body = charts._y_axis(f, "PSI") + charts._legend(list(series))
    y = charts._r(f.y(threshold))
    body.append(f'<line class="threshold" x1="{f.left}" x2="{f.left + f.width}" y1="{y}" '
                f'y2="{y}" stroke="#66737a" stroke-dasharray="4 3"><title>alert threshold</title></line>')  # fmt: skip
    for i, (name, vs) in enumerate(series.items()):
        colour = charts.PALETTE[i % len(charts.PALETTE)]
        pts = [(n, charts._num(v)) for n, v in enumerate(vs, start=1)]
        path = " ".join(f"{charts._r(f.x(n))},{charts._r(f.y(v))}" for n, v in pts if v is not None)
        if path:
            body.append(f'<polyline class="psi-line" points="{path}" fill="none" '
                        f'stroke="{colour}"><title>{charts._e(name)}</title></polyline>')  # fmt: skip
        for n, v in pts:
            if v is not None:
                body.append(f'<circle class="point" cx="{charts._r(f.x(n))}" '
                            f'cy="{charts._r(f.y(v))}" r="2.5" fill="{colour}"><title>'
                            f"{charts._e(name)}: PSI {charts._fmt(v)} "
                            f"({charts._e(history[n - 1]['computed_at'])})</title></circle>")  # fmt: skip
    body.append(f'<text x="{charts._r(f.left + f.width / 2)}" y="{charts.HEIGHT - 6}" '
                f'text-anchor="middle" fill="#66737a">pass</text>')  # fmt: skip
    return Markup(charts._svg(title, body, "psi-history"))


def _back(message: str, ok: bool = True, model: str | None = None):
    return back("monitoring.page", message, ok, f"#monitor-{model}" if model else "")


@bp.get("/monitoring")
@needs("monitor.read")
def page():
    app, actor = appliance(), request_actor()
    models = []
    for m in app.monitoring.overview(actor):
        status = app.monitoring.status(m["model"], actor)
        snaps = status["snapshots"]
        live = [s for s in snaps if s["variant"] == "live"] or snaps
        focus = live[0] if live else None
        key = f"{focus['variant']}|{focus['window']}" if focus else None
        chart = None
        if key and status["history"].get(key):
            chart = psi_chart(status["history"][key],
                              f"PSI of {m['model']} over recent passes ({key.replace('|', ', ')})",
                              status["config"]["thresholds"]["psi"])  # fmt: skip
        models.append({"name": m["model"], "snapshots": snaps, "focus": focus, "chart": chart,
                       "alerts": status["alerts"], "config": status["config"]})  # fmt: skip
    return render_template(
        "monitoring.html",
        models=models,
        open_alerts=app.monitoring.alerts(actor),
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.post("/monitoring/run")
@needs("monitor.configure")
def run():
    try:
        r = appliance().monitoring.run_pass(request_actor())
        n = sum(len(s) for s in r["models"].values())
        opened = sum(a["status"] == "open" for a in r["alerts"])
        return _back(f"pass done: {n} snapshots over {len(r['models'])} models, "
                     f"{opened} alerts opened")  # fmt: skip
    except FalajError as exc:
        return _back(exc.message, ok=False)


@bp.post("/monitoring/alerts/<int:alert_id>/ack")
@needs("monitor.configure")
def ack(alert_id: int):
    try:
        a = appliance().monitoring.acknowledge(alert_id, request_actor())
        return _back(f"alert #{a['id']} acknowledged", model=a["model"])
    except FalajError as exc:
        if exc.status == 404:
            raise
        return _back(exc.message, ok=False)
