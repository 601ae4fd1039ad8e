"""``falaj run``: create the home if needed, optionally load the demo, then serve the
dashboard, API and models with waitress (a production WSGI server)."""

from __future__ import annotations

import signal
import sys

import click
import waitress

from appliance import demo as demo_data
from appliance.audit import Actor
from appliance.core import Appliance
from appliance.errors import FalajError

DEMO_TABLE = "credit_applications"
DEMO_MODEL = "credit_risk"


def load_demo(app: Appliance, actor: Actor) -> None:
    """Ingest the synthetic credit-risk data, train a model and deploy it."""
    say = lambda msg: click.echo(f"demo: {msg}", err=True)  # noqa: E731
    path = demo_data.write(app.home / "demo" / "credit_risk.parquet", app.settings["demo_rows"])
    r = app.ingest(path, DEMO_TABLE, "customer_id", "event_time", actor)
    say(f"ingested {r['rows']} rows into {DEMO_TABLE}")
    t = app.train(DEMO_TABLE, "default", DEMO_MODEL, actor)
    say(
        f"trained {DEMO_MODEL}@{t['version']} (hold-out ROC AUC {t['metrics']['holdout']['roc_auc']:.3f})"
    )
    d = app.deploy(DEMO_MODEL, t["version"], actor)
    say(f"deployed {DEMO_MODEL}@{d['version']} in the {d['slot']} slot")


def start(app: Appliance, demo: bool, actor: Actor) -> None:
    from webui import create_app

    host, port = app.settings["host"], app.settings["port"]
    try:  # bind first: a taken port fails at once, before any work is done
        server = waitress.create_server(
            create_app(app), host=host, port=port, threads=app.settings["threads"], ident="falaj"
        )
    except OSError as exc:
        raise FalajError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None

    result = app.init(actor)
    if result["created_key"]:
        click.echo(
            f"created a new home in {app.home}; master key in {app.key_path} (back it up)", err=True
        )
    if demo and not app.tables():
        load_demo(app, actor)
    app.server.refresh(force=True)  # load and verify every deployed bundle before serving

    def stop(signum, frame):  # SIGTERM (systemd, docker stop): close stores cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"Falaj serving on http://{host}:{server.effective_port}", err=True)
    sys.stderr.flush()
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        server.close()
