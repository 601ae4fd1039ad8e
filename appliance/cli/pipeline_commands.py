"""``falaj pipelines ...`` and ``falaj jobs``: pipelines, their runs and scheduled jobs."""

from __future__ import annotations

import sys
from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _run_text(run: dict[str, Any]) -> str:
    state = run["status"] + (" (interrupted: resumes at the next `falaj run`)"
                             if run.get("interrupted") else "")  # fmt: skip
    lines = [f"run {run['id']} of {run['pipeline']}: {state}"
             + (f" - {run['error']}" if run.get("error") else "")]  # fmt: skip
    for s in run.get("steps", []):
        progress = f" {s['progress']:.0%}" if s["status"] == "running" else ""
        note = s["error"] if s["status"] == "failed" else s["message"]
        lines.append(f"  {s['idx'] + 1}. {s['name']:<14} {s['status']:<9}{progress} "
                     f"attempts {s['attempts']}  {_duration(s['duration_s']):>7}"
                     + (f"  {note}" if note else ""))  # fmt: skip
    return "\n".join(lines)


@cli.group()
def pipelines() -> None:
    """Pipelines declared in the workspace (pipelines: section) and their runs.

    \b
    Example:
        falaj pipelines list
        falaj pipelines run retrain --wait
        falaj pipelines status
    """


@pipelines.command("list")
@json_option
@service
def pipelines_list(app: Appliance, as_json: bool) -> None:
    """List the workspace's pipelines: steps, triggers and latest run.

    \b
    Example:
        falaj pipelines list --json
    """
    items = app.scheduler.pipelines.list(cli_actor())
    lines = []
    for p in items:
        last = p["last_run"]
        lines.append(f"{p['name']}: {' -> '.join(s['name'] for s in p['steps'])}")
        lines.append(f"  triggers: {', '.join(p['triggers']) or 'manual only'}; last run: "
                     + (f"{last['id']} {last['status']}" if last else "none"))  # fmt: skip
    emit(as_json, items, "\n".join(lines) or "no pipelines declared (add a pipelines: section "
         "to the workspace and `falaj apply` it)")  # fmt: skip


@pipelines.command("run")
@click.argument("name")
@click.option("--wait", is_flag=True,
              help="Wait until the run ends or waits for a person: its steps run here, or "
              "in `falaj run` when one serves this home (else `falaj run` advances it).")  # fmt: skip
@json_option
@service
def pipelines_run(app: Appliance, name: str, wait: bool, as_json: bool) -> None:
    """Start a run of pipeline NAME. Exits 1 when a --wait run fails.

    \b
    Example:
        falaj pipelines run retrain --wait
    """
    actor = cli_actor()
    svc = app.scheduler.pipelines
    run = svc.start(name, actor, {"kind": "manual"})
    if wait:
        say = None if as_json else (lambda msg: click.echo(f"{run['id']}: {msg}", err=True))
        run = svc.follow(run["id"], actor, say=say)
    text = _run_text(run)
    if not wait:
        text += "\nqueued: `falaj run` advances it (or start it with --wait)"
    emit(as_json, run, text)
    if run["status"] in ("failed", "cancelled"):
        sys.exit(1)


@pipelines.command("status")
@click.argument("run_id", required=False)
@click.option("--pipeline", help="Only the runs of this pipeline.")
@json_option
@service
def pipelines_status(app: Appliance, run_id: str | None, pipeline: str | None,
                     as_json: bool) -> None:  # fmt: skip
    """Show one run with its steps, or the latest runs.

    \b
    Example:
        falaj pipelines status r20261130-1a2b3c4d --json
    """
    svc = app.scheduler.pipelines
    if run_id:
        run = svc.get(run_id, cli_actor())
        emit(as_json, run, _run_text(run))
        return
    runs = svc.runs(cli_actor(), pipeline)
    emit(as_json, runs, "\n".join(
        f"{r['id']}  {r['pipeline']:<16} {r['status']:<10} {r['created_at'][:19]}  "
        f"{r['trigger'].get('kind', '')}" for r in runs) or "no runs yet")  # fmt: skip


@pipelines.command("approve")
@click.argument("run_id")
@click.option("--reject", is_flag=True, help="Reject instead: the run fails at this step.")
@click.option("--note", default="", help="Why, for the audit trail.")
@json_option
@service
def pipelines_approve(app: Appliance, run_id: str, reject: bool, note: str, as_json: bool) -> None:
    """Approve (or reject) the run's step that waits for a person.

    \b
    Example:
        falaj pipelines approve r20261130-1a2b3c4d --note "metrics reviewed"
    """
    run = app.scheduler.pipelines.approve(run_id, cli_actor(), reject=reject, note=note)
    emit(as_json, run, _run_text(run))


@pipelines.command("cancel")
@click.argument("run_id")
@json_option
@service
def pipelines_cancel(app: Appliance, run_id: str, as_json: bool) -> None:
    """Cancel an active run: its unfinished steps are skipped.

    \b
    Example:
        falaj pipelines cancel r20261130-1a2b3c4d
    """
    run = app.scheduler.pipelines.cancel(run_id, cli_actor())
    emit(as_json, run, _run_text(run))


@cli.command()
@json_option
@service
def jobs(app: Appliance, as_json: bool) -> None:
    """List scheduled jobs: trigger, next run time and last state.

    \b
    Example:
        falaj jobs --json
    """
    items = app.scheduler.jobs(cli_actor())
    emit(as_json, items, "\n".join(
        f"{j['id']:<24} {j['trigger']:<20} next {j['next_run_time'] or '-':<26} "
        f"last {j['last_state'] or '-'}" + (f" ({j['last_error']})" if j["last_error"] else "")
        for j in items) or "no scheduled jobs (`falaj run` registers them)")  # fmt: skip
