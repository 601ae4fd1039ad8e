"""``falaj monitor ...``: drift, live metrics and alerts."""

from __future__ import annotations

from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, fail, json_option, service
from appliance.core import Appliance

WEBHOOK_WAIT = 15.0  # seconds `monitor run` waits for its webhook deliveries


def _num(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _snapshot_lines(s: dict[str, Any]) -> list[str]:
    m = s["metric"]
    lines = [
        f"{s['model']}@{s['version']} {s['variant']}, window {s['window']}: {s['requests']} "
        f"decisions, latency p50 {_num(s['latency_p50_ms'], '.2f')} ms p99 "
        f"{_num(s['latency_p99_ms'], '.2f')} ms, prediction PSI {_num(s['prediction_psi'])}, "
        f"live AUC {_num(m['auc'])} ({m['labelled']} labelled; hold-out "
        f"{_num(m['holdout_auc'])})"
    ]
    if s["drift_reason"]:
        lines.append(f"  drift: {s['drift_reason']}")
    for feature, d in s["drift"].items():
        lines.append(
            f"  {feature:<24} PSI {_num(d['psi'])}  KS {_num(d['ks_statistic'])}  "
            f"W1 {_num(d['wasserstein'])}  JS {_num(d['jensenshannon'])}"
        )
    return lines


def _alert_line(a: dict[str, Any]) -> str:
    return f"#{a['id']} [{a['status']}] {a['model']} {a['kind']}: {a['message']} ({a['raised_at']})"


@cli.group()
def monitor() -> None:
    """Monitoring: drift of live traffic, live metrics, alerts and their webhook.

    \b
    Example:
        falaj monitor run credit
        falaj monitor status credit
        falaj monitor alerts
    """


@monitor.command("run")
@click.argument("model", required=False)
@click.option("--window", default=None,
              help="Windows to compute, comma-separated (1h, 1d, 10000 decisions) "
                   "[default: the monitor_windows setting].")  # fmt: skip
@json_option
@service
def monitor_run(app: Appliance, model: str | None, window: str | None, as_json: bool) -> None:
    """Run one monitoring pass now: drift, latency and live metrics per variant and
    window, stored for the dashboard; alerts opened or resolved.

    \b
    Example:
        falaj monitor run
        falaj monitor run credit --window 1h,10000
    """
    r = app.monitoring.run_pass(cli_actor(), model=model, window=window)
    undelivered = app.monitoring.deliver_alerts(WEBHOOK_WAIT)
    lines = [line for snaps in r["models"].values() for s in snaps for line in _snapshot_lines(s)]
    lines += [f"alert {a['status']}: {a['model']} {a['kind']}: {a['message']}" for a in r["alerts"]]
    if undelivered:
        lines.append(f"{undelivered} alert(s) not delivered to the webhook yet (retried next pass)")
    emit(as_json, r | {"undelivered": undelivered},
         "\n".join(lines) or "no decisions logged yet: nothing to monitor")  # fmt: skip
    if r["errors"]:
        fail("not monitored: " + "; ".join(f"{m}: {e}" for m, e in r["errors"].items()), 1)


@monitor.command("status")
@click.argument("model")
@json_option
@service
def monitor_status(app: Appliance, model: str, as_json: bool) -> None:
    """Show a model's latest monitoring snapshots (from the last pass) and its open alerts.

    \b
    Example:
        falaj monitor status credit --json
    """
    r = app.monitoring.status(model, cli_actor())
    lines = [line for s in r["snapshots"] for line in _snapshot_lines(s)]
    if not lines:
        lines = [f"{model}: no monitoring pass yet (falaj monitor run {model})"]
    lines += [_alert_line(a) for a in r["alerts"]]
    emit(as_json, r, "\n".join(lines))


@monitor.command("alerts")
@click.option("--all", "show_all", is_flag=True, help="Also acknowledged and resolved ones.")
@click.option("--model", default=None, help="One model's alerts.")
@click.option("--since", default=None, help="Changed at or after this ISO time.")
@json_option
@service
def monitor_alerts(app: Appliance, show_all: bool, model: str | None, since: str | None,
                   as_json: bool) -> None:  # fmt: skip
    """List alerts, newest first (open ones unless --all).

    \b
    Example:
        falaj monitor alerts
        falaj monitor alerts --all --model credit
    """
    rows = app.monitoring.alerts(cli_actor(), open_only=not show_all, since=since, model=model)
    emit(as_json, rows, "\n".join(map(_alert_line, rows)) or "no alerts")


@monitor.command("ack")
@click.argument("alert_id", type=int)
@json_option
@service
def monitor_ack(app: Appliance, alert_id: int, as_json: bool) -> None:
    """Acknowledge an open alert (audited); it does not raise again until its
    condition has cleared.

    \b
    Example:
        falaj monitor ack 3
    """
    a = app.monitoring.acknowledge(alert_id, cli_actor())
    emit(as_json, a, _alert_line(a))


@monitor.command("config")
@click.argument("model")
@click.option("--psi", type=float, default=None, help="Input PSI alert threshold [0.2].")
@click.option("--prediction-psi", type=float, default=None,
              help="Prediction PSI alert threshold [0.2].")  # fmt: skip
@click.option("--latency-p99-ms", type=float, default=None, help="p99 latency threshold [250].")
@click.option("--error-rate", type=float, default=None, help="Failed request share [0.05].")
@click.option("--auc-drop", type=float, default=None,
              help="Live AUC drop below the hold-out AUC [0.05].")  # fmt: skip
@click.option("--min-rows", type=float, default=None,
              help="Decisions a window needs before it alerts [500].")  # fmt: skip
@json_option
@service
def monitor_config(app: Appliance, model: str, as_json: bool, **thresholds: float | None) -> None:
    """Show or set a model's alert thresholds (only those given change).

    \b
    Example:
        falaj monitor config credit --psi 0.25 --latency-p99-ms 50
    """
    if any(v is not None for v in thresholds.values()):
        r = app.monitoring.configure(model, cli_actor(), **thresholds)
    else:
        r = app.monitoring.config(model, cli_actor())
    th = ", ".join(f"{k}={v:g}" for k, v in r["thresholds"].items())
    out = r["outcomes"]
    join = "none" if not out else (
        f"{out['table']}.{out['label']} by "
        + (f"request id {out['request_id']}" if out.get("request_id")
           else f"entity {out['entity']} and time {out['timestamp']}"))  # fmt: skip
    emit(as_json, r, f"{model}: {th}\noutcomes: {join}")


@monitor.command("outcomes")
@click.argument("model")
@click.option("--table", required=True, help="Table the outcomes were ingested into.")
@click.option("--label", required=True, help="Its label column (0/1 for live AUC).")
@click.option("--request-id", default=None, help="Join on this column = the decision's request id.")
@click.option("--entity", default=None,
              help="Join on this column = the decision's request key (entity id)...")  # fmt: skip
@click.option("--timestamp", default=None,
              help="...taking the latest decision at or before this column's time.")  # fmt: skip
@json_option
@service
def monitor_outcomes(app: Appliance, model: str, table: str, label: str, request_id: str | None,
                     entity: str | None, timestamp: str | None, as_json: bool) -> None:  # fmt: skip
    """Say where a model's outcomes (labels arriving later) are and how they join its
    decisions, for live AUC and log loss per variant.

    \b
    Example:
        falaj ingest repaid.csv --table repaid --entity customer_id --timestamp paid_at
        falaj monitor outcomes credit --table repaid --label default \\
            --entity customer_id --timestamp paid_at
    """
    r = app.monitoring.set_outcomes(model, cli_actor(), table, label, request_id=request_id,
                                    entity=entity, timestamp=timestamp)  # fmt: skip
    emit(as_json, r, f"{model}: outcomes from {table}.{label}")


@monitor.command("webhook")
@click.argument("url", required=False, default="")
@json_option
@service
def monitor_webhook(app: Appliance, url: str, as_json: bool) -> None:
    """Set the URL alerts are POSTed to as JSON: loopback or a private LAN address
    only; an empty URL turns it off.

    \b
    Example:
        falaj monitor webhook http://127.0.0.1:9000/falaj-alerts
        falaj monitor webhook ""
    """
    r = app.monitoring.set_webhook(url, cli_actor())
    emit(as_json, r, f"alerts go to {r['webhook']}" if r["webhook"] else "alert webhook off")
