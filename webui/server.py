"""``falaj run``: bind the port(s), create the home if needed, check both stores, load
the demo if asked, then serve the dashboard, API and models with cheroot (CherryPy's
production WSGI server: a thread pool in this process, where the model slots live, and
TLS through Python's ``ssl``), and the Open Inference Protocol over gRPC when
``grpc_port`` is set, until SIGTERM or Ctrl-C.

HTTPS whenever it listens beyond loopback (plain HTTP is refused there) and on loopback
with ``--tls``: see ``appliance.tls``. The gRPC service then uses the same certificate.
"""

from __future__ import annotations

import logging
import re
import select
import signal
import ssl
import sys
from typing import Any

import click
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from appliance import tls
from appliance.auth import Actor
from appliance.core import Appliance
from appliance.errors import FalajError
from webui import create_app

KEEP_ALIVE_CONNECTIONS = 256  # idle keep-alive connections held open (cheroot's default: 10)
LINGER_S = 0.002  # how long a worker waits for a keep-alive client's next request


class _Server(wsgi.Server):
    """cheroot's server, whose worker waits up to LINGER_S for the next request on a
    keep-alive connection before handing it back to the selector thread, while no other
    connection waits for a worker. A client that sends its next request at once (every
    API client in a loop) is then served by the same thread: the hand-offs to the
    selector thread and back, each a thread wake-up and a turn of the GIL, cost more
    than an empty request itself (1 ms against 0.15 on 2 cores)."""

    def put_conn(self, conn):
        try:
            while (self.ready and not conn.rfile.has_data() and self.requests._queue.empty()
                   and select.select([conn.socket], [], [], LINGER_S)[0]):  # fmt: skip
                if not conn.communicate():  # the client closed, or asked to
                    conn.close()
                    return
        except Exception:  # as cheroot's worker does: drop the connection, keep the thread
            conn.close()
            return
        super().put_conn(conn)


class _Adapter(BuiltinSSLAdapter):
    """cheroot's TLS adapter with our context (TLS 1.2+, strong suites), its handshake
    left to the worker thread's first read: cheroot's own adapter shakes hands in the
    thread that accepts connections, so one client that connects and stalls would hold
    up every other client's accept for the socket timeout."""

    def __init__(self, context: ssl.SSLContext) -> None:  # noqa: D107 -- no super(): no files
        self.certificate = self.private_key = self.certificate_chain = None
        self.ciphers = None
        self.context = context
        self._server_env = {}

    def wrap(self, sock):
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), {}  # fmt: skip


def make_server(wsgi_app: Any, host: str, port: int, threads: int,
                context: ssl.SSLContext | None = None) -> wsgi.Server:  # fmt: skip
    """A cheroot server bound to (host, port), its threads started; ``serve()`` runs it.
    A taken port is a ``FalajError`` at once, before any work is done."""
    server = _Server((host, port), wsgi_app, numthreads=threads, server_name="falaj")
    server.keep_alive_conn_limit = KEEP_ALIVE_CONNECTIONS
    if context is not None:
        server.ssl_adapter = _Adapter(context)
    try:
        server.prepare()
    except OSError as exc:
        # cheroot sums up every address it tried: "... ((host, port): [Errno 98] Address
        # already in use)"; say the reason alone
        found = re.search(r"\[Errno \d+\] ([^)]+)\)", str(exc))
        why = exc.strerror or (found[1] if found else str(exc))
        raise FalajError(f"cannot listen on {host}:{port}: {why}; choose another --port") from None
    return server


def effective_port(server: wsgi.Server) -> int:
    return server.socket.getsockname()[1]


def start(app: Appliance, demo: bool, actor: Actor) -> None:
    host, port = app.settings["host"], app.settings["port"]
    plan = tls.plan(app.settings)  # refuses plain HTTP beyond loopback before binding
    context = tls.server_context(plan.cert, plan.key) if plan.enabled else None
    # cheroot logs each client that drops a connection or fails a TLS handshake: noise
    logging.getLogger("cheroot").setLevel(logging.ERROR)
    server = make_server(create_app(app), host, port, app.settings["threads"], context)

    if app.settings.get("log_format") == "json":  # one JSON object a line, these too
        say = logging.getLogger("falaj").info
    else:
        say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    grpc_server = None
    try:
        if app.settings["grpc_port"]:
            from webui import grpc_server as grpc_module  # grpcio loads only when asked for

            grpc_server, grpc_port = grpc_module.create_server(
                app, host, app.settings["grpc_port"], app.settings["threads"],
                tls=(plan.cert, plan.key) if plan.enabled else None,
            )  # fmt: skip
        result = app.init(actor)
        if result["created_key"]:
            say(f"created a new home in {app.home}; master key in {app.key_path} (back it up)")
        if app.settings["check_on_start"]:
            app.check(actor)  # every page of both stores, before anything is served
        if demo and not app.catalog.tables(actor):
            app.load_demo(actor, say=lambda msg: say(f"demo: {msg}"))
        app.serving.server.refresh(force=True)  # load and verify every deployed bundle
    except BaseException:
        server.stop()
        if grpc_server is not None:
            grpc_server.stop(None)
        raise

    def stop(signum, frame):  # SIGTERM (systemd, docker stop) or Ctrl-C: stop once, cleanly
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url_host = f"[{host}]" if ":" in host else host
    say(f"Falaj serving on {plan.scheme}://{url_host}:{effective_port(server)}")
    app.auth.first_start(
        say, f"{plan.scheme}://{url_host}:{effective_port(server)}"
    )  # no admin yet: a one-time enrolment link
    if plan.generated:
        say(f"TLS: self-signed certificate {plan.cert} (SHA-256 {tls.fingerprint(plan.cert)})")
    if grpc_server is not None:
        grpc_server.start()
        say(f"Open Inference Protocol (gRPC{' over TLS' if plan.enabled else ''}) on "
            f"{host}:{grpc_port}")  # fmt: skip
    sys.stderr.flush()
    try:
        app.scheduler.start(say)  # jobs and pipeline runs; one process per home takes them
        server.serve()  # returns on the KeyboardInterrupt that stop() raises
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping")
        app.scheduler.stop()  # a running step stops at its next progress report
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()  # in-flight calls finish, new ones are refused
        server.stop()
