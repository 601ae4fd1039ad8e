"""The Data page: tables and their contracts, feature views and their versions, quality
reports, the quarantine (release and drop), the online store's freshness (materialize)
and registered training sets. Forms post to the same services the CLI calls, then
redirect back (post/redirect/get), carrying one line of outcome."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from appliance.errors import FalajError, NotFound
from webui.api import appliance, back, request_actor
from webui.auth import needs

bp = Blueprint("data", __name__)

MAX_REF = 200  # a batch id is 32 hex digits, a row-id list a few numbers


def _back(message: str, ok: bool = True, anchor: str = ""):
    return back("data.page", message, ok, anchor)


@bp.get("/data")
@needs("data.read")
def page():
    app, actor = appliance(), request_actor()
    held, held_missing = None, None
    wanted = request.args.get("quarantine", "").strip()[:MAX_REF]
    if wanted:
        try:
            held = app.quarantine.show(wanted, actor)
        except NotFound as exc:
            held_missing = exc.message
    return render_template(
        "data.html",
        tables=app.catalog.tables(actor),
        views=[app.views.show(v["view"], actor) for v in app.views.list(actor)],
        reports=app.ingestion.quality_reports(actor, limit=app.settings["audit_tail"] * 2),
        quarantine=app.quarantine.list(actor),
        wanted=wanted,
        held=held,
        held_missing=held_missing,
        online=app.online.freshness(actor),
        training_sets=app.training_sets.list(actor)[-app.settings["audit_tail"] :][::-1],
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


def _act(fn, anchor: str):
    try:
        return _back(fn(), anchor=anchor)
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor=anchor)


@bp.post("/data/quarantine/release")
@needs("data.quarantine")
def release():
    ref = request.form.get("ref", "").strip()[:MAX_REF]
    force = request.form.get("force") == "1"

    def run() -> str:
        r = appliance().quarantine.release(ref, request_actor(), force=force)
        return f"released {r['released']} rows into {r['table']}; {r['kept']} still held"

    return _act(run, "#quarantine")


@bp.post("/data/quarantine/drop")
@needs("data.quarantine")
def drop():
    ref = request.form.get("ref", "").strip()[:MAX_REF]

    def run() -> str:
        r = appliance().quarantine.drop(ref, request_actor())
        return f"dropped {r['dropped']} rows held for {r['table']}"

    return _act(run, "#quarantine")


@bp.post("/data/materialize")
@needs("features.define")
def materialize():
    view = request.form.get("view", "").strip()[:MAX_REF]

    def run() -> str:
        r = appliance().online.materialize(view, request_actor())
        return f"materialized {r['view']}: {r['rows_written']} entities written"

    return _act(run, "#online")
