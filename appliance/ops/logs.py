"""The process's logs: plain text by default, one JSON object a line with
``log_format = "json"`` (for journald, Loki or any collector).

Every line has the time (UTC), level, logger and message. A request's line (logger
``falaj.request``, written by ``webui.logs``) adds its request id, method, path (never the
query string), status, actor (``kind:name``), model and latency in milliseconds. Nothing
else of a request is logged: no query string, body, header value or record value, so no
personal data beyond an account's name, and no secret, reaches the log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

REQUEST_LOGGER = "falaj.request"
REQUEST_FIELDS = ("request_id", "method", "path", "status", "actor", "model", "latency_ms")
FORMATS = ("plain", "json")


def _utc(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _utc(record), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}  # fmt: skip
        request = getattr(record, "request", None)
        if request is not None:
            line.update(request)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, a request's fields as ``key=value`` after it."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_utc(record)} {record.levelname} {record.name}: {record.getMessage()}"
        request = getattr(record, "request", None)
        if request is not None:
            text += " " + " ".join(f"{k}={request[k]}" for k in REQUEST_FIELDS
                                   if request.get(k) is not None)  # fmt: skip
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: str = "plain", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process (INFO and up) to ``stream`` (stderr) in
    ``log_format``; replaces the handlers configured before. The handler."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    # Fields no line shows, which every record would otherwise look up (the caller's
    # frame, thread and process names: a third of a request line's cost; see "Optimization"
    # in the logging docs).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # APScheduler says INFO for every run of every job (each 5 s): only its problems
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return handler
