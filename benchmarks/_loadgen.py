"""A closed-loop HTTP load generator that is not the bottleneck: one process per client.

    with Clients(port, 8, {"Authorization": "Bearer ..."}) as clients:
        got = clients.run("/api/v1/models/credit/predict", body, 2000)

Each client is a process with one keep-alive TCP connection (TLS when given a CA file),
sending one request at a time and timing each with ``time.perf_counter``. The request
bytes are built once per run; only the ``X-Falaj-Key: client-{i}-{j}`` header of a
POST changes per request (a release routes by it). The response is read with a minimal
parser: the head up to the blank line, then Content-Length bytes of body.

Why processes and raw sockets: clients as threads in the benchmark's process fight for
the GIL, and http.client parses every response's headers with the email package, so on
a 2-core box they spent 290-360 us of CPU per request and sat on its critical path. The
same `falaj run --decision-log async`, same run, alternating rounds of 2,000 requests
(load average 3-4):

    /healthz        threads + http.client     processes + raw sockets
    concurrency 1   1199 req/s, p99  4.5 ms   1856 req/s, p99  1.9 ms   client 288 -> 83 us/req
    concurrency 8   1206 req/s, p99 17.7 ms   1392 req/s, p99 14.5 ms   client 358 -> 145 us/req
    predict, 1      637 req/s                 940 req/s
    predict, 8      627 req/s, p99 36.3 ms    835 req/s, p99 32.5 ms

What is left at concurrency 8 is the server's: one process whose worker threads share
one GIL uses at most one core, and spends more CPU per request with 8 connections than
with 1 (/healthz 450 -> 550-600 us), so its req/s drops and the median latency is about
8 / req/s (Little's law). ``client_cpu_s`` in each result says how much of a request the
clients themselves cost. Real load generators (wrk, hey, oha) are native and
multi-threaded; this one uses only the standard library and NumPy, so the benchmarks
run anywhere the project does.

The processes are forked once (spawning would re-import the benchmark, a second and a
half each) and kept across ``run`` calls until ``close``; each run opens its connections
afresh, untimed, as the server closes keep-alive connections left idle between runs.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection
import socket
import ssl
import threading
import time
from typing import Any

import numpy as np

HOST = "127.0.0.1"
TIMEOUT_S = 120.0  # per request, and for the clients to meet at the start
BUFSIZE = 1 << 16


def _connect(port: int, cafile: str | None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if cafile:  # an SSLContext cannot be pickled: each client builds its own
        sock = ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname=HOST)
    return sock


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes, bool]:
    """Send ``request``, read one response: its status, body and whether the server
    will close the connection."""
    sock.sendall(request)
    buf = sock.recv(BUFSIZE)
    while (end := buf.find(b"\r\n\r\n")) < 0:
        more = sock.recv(BUFSIZE)
        if not more:
            raise ConnectionError(f"the server closed the connection mid-response: {buf[:200]!r}")
        buf += more
    head = buf[:end].lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:  # no chunked reading here: every server measured sends a length
        raise RuntimeError(f"a response without Content-Length: {buf[:200]!r}")
    stop = head.find(b"\r\n", at + 17)
    need = end + 4 + int(head[at + 17 : stop if stop >= 0 else None])
    if len(buf) < need:
        chunks, have = [buf], len(buf)
        while have < need:
            more = sock.recv(max(need - have, BUFSIZE))
            if not more:
                raise ConnectionError("the server closed the connection mid-body")
            chunks.append(more)
            have += len(more)
        buf = b"".join(chunks)
    if len(buf) != need:  # one request at a time: nothing may follow the body
        raise RuntimeError(f"{len(buf) - need} bytes after the response: {buf[need:][:200]!r}")
    # HTTP/1.0 closes unless asked to keep alive
    closing = b"\r\nconnection: close" in head or (
        head.startswith(b"http/1.0") and b"\r\nconnection: keep-alive" not in head
    )
    return int(buf[9:12]), buf[end + 4 :], closing


def _client(i: int, port: int, cafile: str | None, conn, start) -> None:
    """One client process: runs each job it is sent, answers its latencies; None stops it."""
    clock = time.perf_counter
    try:
        while (job := conn.recv()) is not None:
            before, after, path, per, warmup = job
            latencies = np.empty(per)
            # a connection per run, as a fresh client would open: between runs the
            # server may close an idle one (cheroot after 10 s)
            sock = _connect(port, cafile)
            for j in range(warmup + per):
                # a GET is the same bytes every time; a POST carries its own key
                request = before if after is None else b"%s%d-%d%s" % (before, i, j, after)
                if j == warmup:
                    start.wait(TIMEOUT_S)  # every client is warm: go together
                    t_start, cpu = clock(), time.process_time()
                t0 = clock()
                status, body, closing = _exchange(sock, request)
                if j >= warmup:
                    latencies[j - warmup] = clock() - t0
                if status != 200:
                    raise RuntimeError(f"{path}: {status} {body[:200]!r}")
                if closing:  # not timed: a server that closes is not what is measured
                    sock.close()
                    sock = _connect(port, cafile)
            sock.close()
            conn.send(("ok", t_start, clock(), latencies, time.process_time() - cpu))
    except threading.BrokenBarrierError:
        conn.send(("error", "another client failed before the start"))
    except Exception as exc:
        start.abort()  # the others stop waiting for this one
        conn.send(("error", f"client {i}: {type(exc).__name__}: {exc}"))


def _start_method() -> str:
    # fork: a spawned child would re-import the benchmark's main module (appliance and all)
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class Clients:
    """``concurrency`` client processes against ``127.0.0.1:port`` (over TLS, trusting
    ``cafile``, when given), each sending ``headers`` on every request; kept until
    ``close``."""

    def __init__(self, port: int, concurrency: int, headers: dict[str, str] | None = None,
                 cafile: str | None = None) -> None:  # fmt: skip
        self.port, self.concurrency = port, concurrency
        self.headers = dict(headers or {})
        ctx = multiprocessing.get_context(_start_method())
        self._start = ctx.Barrier(concurrency)
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        for i in range(concurrency):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_client, args=(i, port, cafile, theirs, self._start),
                               name=f"loadgen-{port}-{i}", daemon=True)  # fmt: skip
            proc.start()
            theirs.close()  # so that a client's death reads as EOF here
            self._conns.append(ours)
            self._procs.append(proc)

    def request(self, path: str, body: bytes | None) -> tuple[bytes, bytes | None]:
        """A GET of ``path`` when ``body`` is None (the same bytes each time), else a
        POST of ``body``: the bytes before and after its key's ``{i}-{j}``."""
        head = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1",
                f"Host: {HOST}:{self.port}"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        if body is None:
            return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), None
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}",
                 "X-Falaj-Key: client-"]  # fmt: skip
        return "\r\n".join(head).encode("latin-1"), b"\r\n\r\n" + body

    def run(self, path: str, body: bytes | None, n: int, warmup: int = 3) -> dict[str, Any]:
        """``n`` timed requests spread over the clients, after ``warmup`` untimed ones
        each, all starting together; requests/s over the wall time from that start to
        the last client's finish, p50 and p99 of every request's latency (and the
        latencies, ``times``)."""
        if not self._procs:
            raise RuntimeError("these clients were closed")
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        per = math.ceil(n / self.concurrency)
        before, after = self.request(path, body)
        for conn in self._conns:
            conn.send((before, after, path, per, warmup))
        answers = []
        for conn, proc in zip(self._conns, self._procs, strict=True):
            multiprocessing.connection.wait([conn, proc.sentinel])
            try:
                answers.append(conn.recv())
            except EOFError:
                answers.append(("error", f"client {proc.name} died (exit code {proc.exitcode})"))
        errors = [a[1] for a in answers if a[0] == "error"]
        if errors:  # the first cause, not the others' broken start
            self.close()
            raise RuntimeError(sorted(errors, key=lambda e: "before the start" in e)[0])
        times = np.concatenate([a[3] for a in answers])
        wall = max(a[2] for a in answers) - min(a[1] for a in answers)
        return {
            "requests": int(times.size),
            "rps": times.size / wall,
            "p50_s": float(np.percentile(times, 50)),
            "p99_s": float(np.percentile(times, 99)),
            "times": times,
            # the clients' CPU seconds per timed request: far below the latency, or the
            # clients are what is measured
            "client_cpu_s": sum(a[4] for a in answers) / times.size,
        }

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):  # that client is gone already
                conn.send(None)
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
