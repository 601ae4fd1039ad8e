"""``falaj release ...``: canary, shadow and A/B releases, by hand or automatic."""

from __future__ import annotations

from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.serving.releases import STRATEGIES


def _variant_line(variant: str, r: dict[str, Any]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return (
        f"  {variant:<9} {r['requests']:>7} requests, {r['errors']} errors "
        f"(rate {num(r['error_rate'], '.4f')}), p50 {num(r['p50_ms'], '.2f')} ms, "
        f"p99 {num(r['p99_ms'], '.2f')} ms, mean output {num(r['mean_output'], '.4f')}"
        + (f", {r['dropped']} copies dropped" if r.get("dropped") else "")
    )


def _release_lines(r: dict[str, Any]) -> list[str]:
    share = f"{r['percent']:g}% " + ("copied" if r["strategy"] == "shadow" else "of keys")
    lines = [
        f"release {r['id']} ({r['status']}): {r['strategy']} of v{r['candidate_version']} "
        f"({r['candidate_slot']}) against v{r['baseline_version']} ({r['baseline_slot']}), "
        f"{share}, started {r['started_at']} by {r['started_by']}"
    ]
    if r.get("policy"):
        lines.append("  automatic: " + ", ".join(f"{k}={v}" for k, v in r["policy"].items()))
    lines += [_variant_line(v, r["report"][v]) for v in ("baseline", "candidate")]
    if r.get("reason") and r["status"] != "active":
        lines.append(f"  ended {r['ended_at']} by {r['ended_by']}: {r['reason']}")
    return lines


@cli.group()
def release() -> None:
    """Releases: a candidate version beside the live one (canary, shadow, A/B).

    \b
    Example:
        falaj release start credit --version 3 --strategy canary --percent 10
        falaj release status credit
        falaj release promote credit
    """


@release.command("start")
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="Candidate version.")
@click.option("--strategy", type=click.Choice(STRATEGIES), required=True,
              help="canary: a sticky share of keys; shadow: copies, never returned; ab: a fixed split.")  # fmt: skip
@click.option("--percent", type=float, default=None,
              help="Candidate's share of traffic, 0-100 [default: canary 10, ab 50, shadow 100 (of copies)].")  # fmt: skip
@click.option("--auto", is_flag=True,
              help="Promote or roll back automatically (falaj release evaluate, or the scheduler).")  # fmt: skip
@click.option("--min-requests", type=int, default=None,
              help="--auto: candidate requests to wait for before promoting.")  # fmt: skip
@click.option("--after", default=None,
              help="--auto: time to wait before promoting (30m, 2h, 1d).")  # fmt: skip
@click.option("--max-error-rate", type=float, default=None,
              help="--auto: roll back above this share of failed candidate predictions.")  # fmt: skip
@click.option("--max-p99-ms", type=float, default=None,
              help="--auto: roll back when the candidate's p99 latency exceeds this.")  # fmt: skip
@click.option("--max-psi", type=float, default=None,
              help="--auto: roll back when the candidate's input drift (PSI) exceeds this.")  # fmt: skip
@click.option("--min-metric-delta", type=float, default=None,
              help="--auto: roll back when its live metric trails the baseline's by more (labels needed).")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Release a version its gates rejected (audited).")  # fmt: skip
@json_option
@service
def release_start(app: Appliance, name: str, version: int, strategy: str, percent: float | None,
                  auto: bool, min_requests: int | None, after: str | None,
                  max_error_rate: float | None, max_p99_ms: float | None, max_psi: float | None,
                  min_metric_delta: float | None, force: bool, as_json: bool) -> None:  # fmt: skip
    """Load a candidate version into the idle slot and route a share of traffic to it.

    The live version keeps the rest (canary, ab) or all of it (shadow, whose copies go
    to the candidate and are logged, never returned). With --auto, `falaj release
    evaluate` (and the scheduler in `falaj run`) promotes it once the evidence is in
    and within thresholds, and rolls it back as soon as one is broken.

    \b
    Example:
        falaj release start credit --version 3 --strategy canary --percent 10
        falaj release start credit --version 3 --strategy shadow
        falaj release start credit --version 3 --strategy canary --percent 20 \\
            --auto --min-requests 500 --max-error-rate 0.01 --max-p99-ms 50
    """
    raw = {"min_requests": min_requests, "after": after, "max_error_rate": max_error_rate,
           "max_p99_ms": max_p99_ms, "max_psi": max_psi, "min_metric_delta": min_metric_delta}  # fmt: skip
    given = {k: v for k, v in raw.items() if v is not None}
    if given and not auto:
        raise BadInput(f"--{next(iter(given)).replace('_', '-')} belongs to an automatic "
                       "release: add --auto")  # fmt: skip
    r = app.releases.start(name, version, strategy, cli_actor(), percent=percent,
                           policy=given if auto else None, force=force)  # fmt: skip
    emit(as_json, r, "\n".join(_release_lines(r["release"])))


@release.command("promote")
@click.argument("name")
@json_option
@service
def release_promote(app: Appliance, name: str, as_json: bool) -> None:
    """Make the candidate live (blue/green switch); the old version stays for rollback.

    \b
    Example:
        falaj release promote credit
    """
    r = app.releases.promote(name, cli_actor())
    emit(as_json, r, f"{name}@{r['live_version']} is live in the {r['live_slot']} slot "
                     f"(release {r['release_id']} promoted)")  # fmt: skip


@release.command("rollback")
@click.argument("name")
@json_option
@service
def release_rollback(app: Appliance, name: str, as_json: bool) -> None:
    """Stop sending traffic to the candidate; the live version answers everything.

    \b
    Example:
        falaj release rollback credit
    """
    r = app.releases.rollback(name, cli_actor())
    emit(as_json, r, f"{name}@{r['live_version']} answers all traffic "
                     f"(release {r['release_id']} rolled back)")  # fmt: skip


@release.command("status")
@click.argument("name")
@json_option
@service
def release_status(app: Appliance, name: str, as_json: bool) -> None:
    """Show a deployment, its active release with a report per variant, and past releases.

    \b
    Example:
        falaj release status credit --json
    """
    r = app.releases.status(name, cli_actor())
    lines = [f"{name}: v{r['live_version']} live in the {r['live_slot']} slot "
             f"(blue v{r['slots']['blue']}, green v{r['slots']['green']})"]  # fmt: skip
    lines += _release_lines(r["release"]) if r["release"] else ["no active release"]
    for past in r["history"][:5]:
        lines += _release_lines(past)
    emit(as_json, r, "\n".join(lines))


@release.command("list")
@json_option
@service
def release_list(app: Appliance, as_json: bool) -> None:
    """List deployments with their live version and active release.

    \b
    Example:
        falaj release list
    """
    rows = app.releases.list(cli_actor())
    lines = []
    for d in rows:
        r = d["release"]
        what = (f"{r['strategy']} of v{r['candidate_version']} at {r['percent']:g}%"
                if r else "no active release")  # fmt: skip
        lines.append(f"{d['name']}: v{d['live_version']} live ({d['live_slot']}); {what}")
    emit(as_json, rows, "\n".join(lines) or "no deployments")


@release.command("evaluate")
@click.argument("name", required=False)
@json_option
@service
def release_evaluate(app: Appliance, name: str | None, as_json: bool) -> None:
    """Judge automatic releases now: promote, roll back or wait (each decision audited).

    \b
    Example:
        falaj release evaluate credit
    """
    rows = app.releases.evaluate(cli_actor(), name)
    lines = [f"{r['name']} (release {r['release_id']}): {r['decision']}: {'; '.join(r['reasons'])}"
             for r in rows]  # fmt: skip
    emit(as_json, rows, "\n".join(lines) or "no active releases")
