"""Settings, declared once as data.

Each ``Setting`` gives its name, default and help. Values come, later winning, from
the defaults, ``$FALAJ_HOME/falaj.toml`` (or ``--config``), ``FALAJ_<NAME>``
environment variables, and CLI flags. The docs and ``falaj settings`` are derived
from this table, and a test checks every setting is documented in the README.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def env(self) -> str:
        return "FALAJ_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("home", "./var", "Folder holding the stores, artifacts and keys."),
    Setting("host", "127.0.0.1", "Address the dashboard and API listen on."),
    Setting("port", 8080, "TCP port the dashboard and API listen on."),
    Setting("threads", 8, "Worker threads of the WSGI server."),
    Setting(
        "grpc_port",
        0,
        "TCP port of the Open Inference Protocol's gRPC service (as Triton's 8001); 0: off.",
    ),
    Setting(
        "tls",
        "auto",
        "HTTPS for `falaj run`: auto (on beyond loopback, off on 127.0.0.1), on, or off "
        "(refused beyond loopback).",
        choices=("auto", "on", "off"),
    ),
    Setting(
        "tls_cert",
        "",
        "PEM certificate (chain) for HTTPS; empty: a self-signed one made in HOME/tls/.",
    ),
    Setting("tls_key", "", "PEM private key of tls_cert (keep it 0600)."),
    Setting(
        "master_key_file",
        "",
        "File holding the 32-byte master key (else systemd credential or keys/master.key).",
    ),
    Setting(
        "device", "auto", "Where kernels run: auto, cpu or cuda.", choices=("auto", "cpu", "cuda")
    ),
    Setting(
        "holdout_fraction",
        0.2,
        "Share of the latest rows (by event time) held out to evaluate a model.",
    ),
    Setting(
        "l2_c", 1.0, "Inverse L2 strength C of the logistic regression (scikit-learn's meaning)."
    ),
    Setting(
        "decision_log",
        "durable",
        "durable: a prediction is answered only once its record is committed (survives a "
        "power cut); async: answered at once, committed every 0.2 s (a crash loses at most "
        "that window).",
        choices=("durable", "async"),
    ),
    Setting(
        "decision_retention_days",
        0,
        "Days a logged decision is kept: older batches are deleted, whole, by `falaj "
        "decisions prune` and once a day by `falaj run` (their audit events stay); 0: forever.",
    ),
    Setting(
        "check_on_start",
        True,
        "`falaj run` reads every page of both stores before serving (false: skip it).",
    ),
    Setting(
        "monitor_windows",
        "1h,1d,10000",
        "Windows of the decision log a monitoring pass computes drift and live metrics "
        "over: durations (1h: the last hour) and counts (10000: the last 10,000 decisions).",
    ),
    Setting(
        "monitor_webhook_timeout",
        5.0,
        "Seconds an alert webhook POST may take before it counts as failed (retried later).",
    ),
    Setting(
        "allowed_networks",
        "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,fe80::/10,fc00::/7",
        "Networks this process may connect to (comma-separated CIDRs): any other outbound "
        "connection is refused, and so is a sink (webhook, export target) outside them.",
    ),
    Setting("demo_rows", 60000, "Rows of the synthetic credit-risk data set that --demo loads."),
    Setting("audit_tail", 20, "Audit events shown by `falaj audit tail` and the dashboard."),
    Setting(
        "session_idle_minutes",
        30,
        "Minutes without a request after which a dashboard session ends (at most 30).",
    ),
    Setting("session_hours", 12, "Hours after sign-in at which a dashboard session ends."),
    Setting(
        "scheduler",
        True,
        "`falaj run` runs scheduled jobs and pipelines (one process per home takes them; "
        "a second `falaj run` on the same home serves but schedules nothing).",
    ),
    Setting(
        "scheduler_tick",
        5.0,
        "Seconds between the scheduler's passes over pipeline runs (retries, approvals, "
        "release decisions) and new-data and drift triggers.",
    ),
    Setting("monitor_every", "5m", "How often `falaj run` runs a monitoring pass."),
    Setting(
        "release_check_every",
        "1m",
        "How often `falaj run` evaluates active releases' automatic promote/rollback policy.",
    ),
    Setting(
        "audit_checkpoint_every",
        "1h",
        "How often `falaj run` signs an audit checkpoint (none when no event was added since "
        "the last); `falaj audit checkpoint` writes one at once.",
    ),
    Setting(
        "log_format",
        "plain",
        "How `falaj run` writes its log to stderr: plain text, or json (one object a line: "
        "time, level, logger, message; a request's id, method, path, status, actor, model "
        "and latency_ms). Never a query string, body, header value or record value.",
        choices=("plain", "json"),
    ),
    Setting("log_requests", True, "`falaj run` logs one line per HTTP request (false: none)."),
)
BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    kind = type(setting.default)
    try:
        if kind is bool and isinstance(value, str):
            text = value.strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            return text in ("1", "true", "yes", "on")
        coerced = kind(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{source}: setting {setting.name!r} expects {kind.__name__}, got {value!r}"
        ) from None
    if setting.choices and coerced not in setting.choices:
        raise ValueError(
            f"{source}: setting {setting.name!r} must be one of {', '.join(setting.choices)}, "
            f"got {value!r}"
        )
    return coerced


def load(
    overrides: dict[str, Any] | None = None, config_file: str | Path | None = None
) -> dict[str, Any]:
    """Resolve every setting: defaults < TOML file < FALAJ_* environment < overrides."""
    values = {s.name: s.default for s in SETTINGS}
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    home = overrides.get("home") or os.environ.get("FALAJ_HOME") or values["home"]
    path = Path(config_file) if config_file else Path(home) / "falaj.toml"
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in BY_NAME:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(BY_NAME[key], value, str(path))
    for s in SETTINGS:
        if s.env in os.environ:
            values[s.name] = _coerce(s, os.environ[s.env], s.env)
    for key, value in overrides.items():
        values[key] = _coerce(BY_NAME[key], value, f"--{key.replace('_', '-')}")
    values["home"] = str(Path(values["home"]).expanduser().resolve())
    return values
