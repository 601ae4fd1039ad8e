"""The Pipelines page and its JSON API: the workspace's pipelines with a Run button, their
runs, one run's step timeline (a server-side SVG and a table with durations) with
Approve, Reject and Cancel buttons, and the scheduled jobs with their next run. Forms
post to the same services as ``falaj pipelines``, then redirect back (post/redirect/get);
the scheduler of ``falaj run`` advances what they start."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from flask import Blueprint, jsonify, render_template, request
from markupsafe import Markup

from appliance.errors import BadInput, FalajError
from webui.api import appliance, back, json_body, request_actor
from webui.auth import needs

bp = Blueprint("pipelines", __name__)

MAX_REF = 200
COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "running": "#1565c0",
           "waiting": "#ef6c00", "pending": "#9e9e9e", "skipped": "#bdbdbd"}  # fmt: skip


def _ref(value: str) -> str:
    if len(value) > MAX_REF:
        raise BadInput(f"a run id or pipeline name is at most {MAX_REF} characters")
    return value


def timeline(run: dict[str, Any]) -> Markup:
    """One bar per step from its start to its end (now while it runs), on the run's clock."""
    steps = run["steps"]
    starts = [s["started_at"] for s in steps if s["started_at"]]
    width, row, left, top = 640, 22, 120, 8
    height = top * 2 + row * len(steps)
    body = []
    if starts:
        t0 = min(datetime.fromisoformat(t) for t in starts)
        spans = []
        for s in steps:
            if not s["started_at"]:
                spans.append(None)
                continue
            a = (datetime.fromisoformat(s["started_at"]) - t0).total_seconds()
            spans.append((a, a + (s["duration_s"] or 0.0)))
        total = max([b for sp in spans if sp for b in sp[1:]] + [1e-3])
        scale = (width - left - 70) / total
        for i, (s, sp) in enumerate(zip(steps, spans, strict=True)):
            y = top + i * row
            body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">'
                        f"{escape(s['name'])}</text>")  # fmt: skip
            if sp is None:
                continue
            x, w = left + sp[0] * scale, max(2.0, (sp[1] - sp[0]) * scale)
            tip = f"{s['name']}: {s['status']}, {s['duration_s'] or 0:.2f} s, attempts {s['attempts']}"
            body.append(f'<rect class="step {escape(s["status"])}" x="{x:.1f}" y="{y + 3}" '
                        f'width="{w:.1f}" height="{row - 6}" fill="{COLOURS.get(s["status"], "#777")}">'
                        f"<title>{escape(tip)}</title></rect>")  # fmt: skip
            body.append(
                f'<text x="{x + w + 4:.1f}" y="{y + 15}">{s["duration_s"] or 0:.1f} s</text>'
            )
    return Markup(
        f'<svg class="timeline" role="img" aria-label="step timeline" viewBox="0 0 {width} '
        f'{height}" width="{width}" height="{height}" font-size="11">{"".join(body)}</svg>'
    )


# -- pages -------------------------------------------------------------------------


@bp.get("/pipelines")
@needs("pipeline.read")
def page():
    app, actor = appliance(), request_actor()
    problem = None
    try:
        declared = app.scheduler.pipelines.list(actor)
    except FalajError as exc:  # a workspace that does not parse: say so, show the runs
        declared, problem = [], exc.message
    return render_template(
        "pipelines.html",
        pipelines=declared,
        problem=problem,
        runs=app.scheduler.pipelines.runs(actor, limit=50),
        jobs=app.scheduler.jobs(actor),
        run=None,
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.get("/pipelines/runs/<run_id>")
@needs("pipeline.read")
def run_page(run_id: str):
    app, actor = appliance(), request_actor()
    run = app.scheduler.pipelines.get(_ref(run_id), actor)  # NotFound: the 404 page
    return render_template(
        "pipelines.html",
        run=run,
        chart=timeline(run),
        waiting=any(s["kind"] == "approve" and s["status"] == "waiting" for s in run["steps"]),
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.post("/pipelines/<name>/run")
@needs("pipeline.run")
def run_form(name: str):
    app, actor = appliance(), request_actor()
    try:
        r = app.scheduler.pipelines.start(_ref(name), actor, {"kind": "manual"})
    except FalajError as exc:
        return back("pipelines.page", exc.message, ok=False)
    return back("pipelines.run_page", f"started run {r['id']} of {name}", run_id=r["id"])


@bp.post("/pipelines/runs/<run_id>/approve")
@needs("pipeline.approve")
def approve_form(run_id: str):
    app, actor = appliance(), request_actor()
    reject = request.form.get("reject") == "1"
    note = request.form.get("note", "")[:500]
    try:
        app.scheduler.pipelines.approve(_ref(run_id), actor, reject=reject, note=note)
    except FalajError as exc:
        return back("pipelines.run_page", exc.message, ok=False, run_id=run_id)
    return back("pipelines.run_page", "rejected" if reject else "approved", run_id=run_id)


@bp.post("/pipelines/runs/<run_id>/cancel")
@needs("pipeline.run")
def cancel_form(run_id: str):
    app, actor = appliance(), request_actor()
    try:
        app.scheduler.pipelines.cancel(_ref(run_id), actor)
    except FalajError as exc:
        return back("pipelines.run_page", exc.message, ok=False, run_id=run_id)
    return back("pipelines.run_page", "cancelled", run_id=run_id)


# -- the JSON API ------------------------------------------------------------------


@bp.get("/api/v1/pipelines")
@needs("pipeline.read")
def api_list():
    return jsonify(appliance().scheduler.pipelines.list(request_actor()))


@bp.post("/api/v1/pipelines/<name>/runs")
@needs("pipeline.run")
def api_start(name: str):
    run = appliance().scheduler.pipelines.start(_ref(name), request_actor(), {"kind": "api"})
    return jsonify(run), 201


@bp.get("/api/v1/pipelines/runs")
@needs("pipeline.read")
def api_runs():
    pipeline = request.args.get("pipeline")
    runs = appliance().scheduler.pipelines.runs(
        request_actor(), _ref(pipeline) if pipeline else None
    )
    return jsonify(runs)


@bp.get("/api/v1/pipelines/runs/<run_id>")
@needs("pipeline.read")
def api_run(run_id: str):
    return jsonify(appliance().scheduler.pipelines.get(_ref(run_id), request_actor()))


@bp.post("/api/v1/pipelines/runs/<run_id>/approve")
@needs("pipeline.approve")
def api_approve(run_id: str):
    body = json_body() if request.content_length else {}
    reject, note = body.get("reject", False), body.get("note", "")
    if not isinstance(reject, bool):
        raise BadInput(f'field "reject": expected true or false, got {reject!r}')
    if not isinstance(note, str) or len(note) > 500:
        raise BadInput('field "note": expected text of at most 500 characters')
    run = appliance().scheduler.pipelines.approve(_ref(run_id), request_actor(), reject, note)
    return jsonify(run)


@bp.post("/api/v1/pipelines/runs/<run_id>/cancel")
@needs("pipeline.run")
def api_cancel(run_id: str):
    return jsonify(appliance().scheduler.pipelines.cancel(_ref(run_id), request_actor()))


@bp.get("/api/v1/jobs")
@needs("pipeline.read")
def api_jobs():
    return jsonify(appliance().scheduler.jobs(request_actor()))
