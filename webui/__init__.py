"""The Flask dashboard and JSON API, thin shells over the Appliance's services."""

from __future__ import annotations

from typing import Any

from flask import Flask

from appliance.core import Appliance


def create_app(appliance: Appliance, test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=16 * 1024 * 1024)
    if test_config:
        app.config.update(test_config)
    app.extensions["falaj"] = appliance

    from webui import (
        api,
        audit,
        auth,
        compliance,
        dashboard,
        data,
        errors,
        fastpath,
        logs,
        metrics,
        models,
        monitoring,
        openapi,
        ops,
        pipelines,
        protocols,
        releases,
        security,
    )

    errors.register(app)  # also installs the strict JSON provider
    app.json.sort_keys = False  # answers keep the order the services give
    app.register_blueprint(api.bp)
    app.register_blueprint(protocols.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(data.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(releases.bp)
    app.register_blueprint(monitoring.bp)
    app.register_blueprint(pipelines.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(auth.bp)  # login, enrolment, users and tokens
    app.register_blueprint(audit.bp)  # checkpoints, receipts and proofs
    app.register_blueprint(compliance.bp)  # consent, data subjects, review queue
    app.register_blueprint(security.bp)  # security headers, the self-test page
    app.register_blueprint(ops.bp)  # backups
    app.register_blueprint(logs.bp)  # request logs
    app.wsgi_app = fastpath.FastPath(app, appliance)  # predict and healthz, in plain WSGI
    return app
