"""The dashboard: server-rendered pages over the same services the CLI uses."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    app = current_app.extensions["falaj"]
    deployments = app.server.deployments()
    return render_template(
        "index.html",
        home=app.home,
        tables=app.tables(),
        models=app.models(),
        deployments=deployments,
        predictions=app.prediction_count(),
        audit=app.audit_verify(),
        events=app.audit_tail(app.settings["audit_tail"]),
    )
