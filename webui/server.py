"""``falaj run``: bind the port(s), create the home if needed, check both stores, load
the demo if asked, then serve the dashboard, API and models with waitress (a production
WSGI server), and the Open Inference Protocol over gRPC when ``grpc_port`` is set, until
SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys

import click
import waitress

from appliance.auth import Actor
from appliance.core import Appliance
from appliance.errors import FalajError
from webui import create_app


def start(app: Appliance, demo: bool, actor: Actor) -> None:
    host, port = app.settings["host"], app.settings["port"]
    # Requests queued while every worker thread is busy are normal under load: waitress
    # warns of each one (a log line per request, on the hot path); keep its errors.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:  # bind first: a taken port fails at once, before any work is done
        server = waitress.create_server(
            create_app(app), host=host, port=port, threads=app.settings["threads"], ident="falaj"
        )
    except OSError as exc:
        raise FalajError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None

    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    grpc_server = None
    try:
        if app.settings["grpc_port"]:
            from webui import grpc_server as grpc_module  # grpcio loads only when asked for

            grpc_server, grpc_port = grpc_module.create_server(
                app, host, app.settings["grpc_port"], app.settings["threads"]
            )
        result = app.init(actor)
        if result["created_key"]:
            say(f"created a new home in {app.home}; master key in {app.key_path} (back it up)")
        if app.settings["check_on_start"]:
            app.check(actor)  # every page of both stores, before anything is served
        if demo and not app.catalog.tables(actor):
            app.load_demo(actor, say=lambda msg: say(f"demo: {msg}"))
        app.serving.server.refresh(force=True)  # load and verify every deployed bundle
    except BaseException:
        server.close()
        if grpc_server is not None:
            grpc_server.stop(None)
        raise

    def stop(signum, frame):  # SIGTERM (systemd, docker stop) or Ctrl-C: stop once, cleanly
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(f"Falaj serving on http://{host}:{server.effective_port}")
    if grpc_server is not None:
        grpc_server.start()
        say(f"Open Inference Protocol (gRPC) on {host}:{grpc_port}")
    sys.stderr.flush()
    try:
        app.scheduler.start(say)  # jobs and pipeline runs; one process per home takes them
        server.run()  # returns on the KeyboardInterrupt that stop() raises
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping")
        app.scheduler.stop()  # a running step stops at its next progress report
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()  # in-flight calls finish, new ones are refused
        server.close()
