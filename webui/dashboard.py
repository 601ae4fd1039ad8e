"""The dashboard: server-rendered pages over the same services the CLI uses."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from appliance.errors import NotFound, StoreDamaged
from webui.api import appliance, request_actor
from webui.auth import needs

bp = Blueprint("dashboard", __name__)

MAX_ID = 128  # request ids are 32 hex digits; anything much longer is not one


@bp.get("/")
@needs("model.read")
def index():
    """The overview; each section only for a role that may read it."""
    app, actor = appliance(), request_actor()
    wanted = request.args.get("decision", "").strip()[:MAX_ID]
    decision, missing = None, None
    decisions = actor.can("decision.read")
    if wanted and decisions:
        try:
            decision = app.serving.decision(wanted, actor)
        except NotFound as exc:
            missing = exc.message
    audited = actor.can("audit.read")
    return render_template(
        "index.html",
        home=app.home,
        tables=app.catalog.tables(actor) if actor.can("data.read") else [],
        models=app.registry.versions(actor),
        deployments=app.serving.deployments(actor),
        predictions=app.serving.decision_count(actor) if decisions else None,
        recent=app.serving.recent_decisions(actor, app.settings["audit_tail"]) if decisions else [],
        wanted=wanted,
        decision=decision,
        missing=missing,
        audit=app.audit.verify(actor) if audited else None,
        events=app.audit.tail(app.settings["audit_tail"], actor) if audited else [],
    )


@bp.get("/check")
@needs("home.check")
def check():
    """Read every page of both stores, as `falaj check` does."""
    app = appliance()
    try:
        app.check(request_actor())
        return render_template("check.html", damage=None), 200
    except StoreDamaged as exc:
        return render_template("check.html", damage=exc.message), 503
