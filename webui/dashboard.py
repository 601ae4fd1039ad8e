"""The dashboard: server-rendered pages over the same services the CLI uses."""

from __future__ import annotations

from flask import Blueprint, render_template

from webui.api import appliance, request_actor

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    app, actor = appliance(), request_actor()
    return render_template(
        "index.html",
        home=app.home,
        tables=app.catalog.tables(actor),
        models=app.registry.versions(actor),
        deployments=app.serving.deployments(actor),
        predictions=app.serving.decision_count(actor),
        audit=app.audit.verify(actor),
        events=app.audit.tail(app.settings["audit_tail"], actor),
    )
