"""`falaj consent`, `falaj subject`, `falaj review` and `falaj compliance`: the consent
registry, data-subject requests, the review queue and the record of processing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.compliance.consent import BASES
from appliance.compliance.record import processing_csv
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.files import publish


def _consent_line(r: dict[str, Any]) -> str:
    state = f"withdrawn {r['withdrawn_at']}" if r["withdrawn_at"] else "given"
    return (f"#{r['id']} {r['subject']} {r['purpose']} ({r['basis']}): given {r['given_at']} "
            f"by {r['given_by']}; {state}")  # fmt: skip


# -- consent ------------------------------------------------------------------------------


@cli.group()
def consent() -> None:
    """The consent registry: subject (an entity id), purpose, legal basis, given and
    withdrawn times. Withdrawing model-training leaves the subject out of training sets
    (and quarantines their new rows); withdrawing automated-decision refuses predictions.

    \b
    Example:
        falaj consent give 100405 --purpose model-training --basis consent
        falaj consent withdraw 100405 --purpose automated-decision
        falaj consent list 100405
    """


@consent.command("give")
@click.argument("subject")
@click.option("--purpose", required=True, help="model-training, automated-decision, ... (lower-case words joined by -).")  # fmt: skip
@click.option("--basis", type=click.Choice(BASES), default="consent", show_default=True,
              help="The legal basis.")  # fmt: skip
@json_option
@service
def consent_give(app: Appliance, subject: str, purpose: str, basis: str, as_json: bool) -> None:
    """Record consent given for a purpose (a new record; audited).

    \b
    Example:
        falaj consent give 100405 --purpose model-training --basis contract
    """
    r = app.consent.give(subject, purpose, basis, cli_actor())
    emit(as_json, r, _consent_line(r) if r["changed"] else f"already given: {_consent_line(r)}")


@consent.command("withdraw")
@click.argument("subject")
@click.option("--purpose", required=True, help="The purpose withdrawn.")
@json_option
@service
def consent_withdraw(app: Appliance, subject: str, purpose: str, as_json: bool) -> None:
    """Record consent withdrawn for a purpose (audited; the history stays).

    \b
    Example:
        falaj consent withdraw 100405 --purpose model-training
    """
    r = app.consent.withdraw(subject, purpose, cli_actor())
    emit(as_json, r, f"withdrawn: {subject} {purpose} at {r['withdrawn_at']}")


@consent.command("list")
@click.argument("subject", required=False)
@click.option("--purpose", default=None, help="Only this purpose.")
@json_option
@service
def consent_list(app: Appliance, subject: str | None, purpose: str | None, as_json: bool) -> None:
    """Consent records, newest first (of one subject when given).

    \b
    Example:
        falaj consent list 100405 --purpose model-training
    """
    rows = app.consent.list(cli_actor(), subject=subject, purpose=purpose)
    emit(as_json, rows, "\n".join(map(_consent_line, rows)) or "no consent records")


# -- data-subject requests ------------------------------------------------------------------


@cli.group()
def subject() -> None:
    """Data-subject requests (the subject is an entity id): export, rectify, erase
    (crypto-shredding), object to an automated decision. Each is audited.

    \b
    Example:
        falaj subject export 100405 --out subject-100405.json
        falaj subject rectify 100405 --table credit_contacts --set email=new@example.ae
        falaj subject object 100405 --decision REQUEST_ID --reason "I dispute it"
        falaj subject erase 100405 --yes
    """


@subject.command("export")
@click.argument("subject_id", metavar="SUBJECT")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the JSON here (0600) instead of printing it.")  # fmt: skip
@service
def subject_export(app: Appliance, subject_id: str, out: Path | None) -> None:
    """Everything held about a subject as one JSON document: their rows in every
    table (personal columns decrypted), online features, decisions, consent, requests.

    \b
    Example:
        falaj subject export 100405 --out subject-100405.json
    """
    doc = app.subjects.export(subject_id, cli_actor())
    text = json.dumps(doc, indent=2, default=str)
    if out is None:
        click.echo(text)
        return
    publish(out, text + "\n")
    n = sum(len(t["rows"]) for t in doc["tables"].values())
    click.echo(f"exported subject {subject_id}: {n} rows in {len(doc['tables'])} tables, "
               f"{len(doc['decisions'])} decisions -> {out} (request {doc['request']})")  # fmt: skip


@subject.command("rectify")
@click.argument("subject_id", metavar="SUBJECT")
@click.option("--table", required=True, help="The feature table to correct.")
@click.option("--set", "changes", multiple=True, required=True, metavar="COLUMN=VALUE",
              help="A corrected value (repeat for several columns).")  # fmt: skip
@click.option("--event-time", default=None, help="Correct the row at this event time (default: the latest).")  # fmt: skip
@json_option
@service
def subject_rectify(app: Appliance, subject_id: str, table: str, changes: tuple[str, ...],
                    event_time: str | None, as_json: bool) -> None:  # fmt: skip
    """Correct a subject's row: a new row version with the corrected values is appended
    (tables are append-only), the online store follows; the audit holds no plaintext.

    \b
    Example:
        falaj subject rectify 100405 --table credit_contacts --set email=new@example.ae
    """
    parsed = {}
    for c in changes:
        col, eq, value = c.partition("=")
        if not eq or not col.strip():
            raise BadInput(f"--set {c!r}: expected COLUMN=VALUE")
        parsed[col.strip()] = value
    r = app.subjects.rectify(subject_id, table, parsed, cli_actor(), event_time=event_time)
    emit(as_json, r, f"rectified subject {subject_id} in {table}: {', '.join(r['columns'])} "
                     f"(request {r['request']}, batch {r['batch']})")  # fmt: skip


@subject.command("erase")
@click.argument("subject_id", metavar="SUBJECT")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@service
def subject_erase(app: Appliance, subject_id: str, yes: bool, as_json: bool) -> None:
    """Erase a subject by crypto-shredding: their key is deleted, so their personal
    columns can never be read again; their online rows go; consent is withdrawn.

    \b
    Example:
        falaj subject erase 100405 --yes
    """
    if not yes:
        click.confirm(f"erase subject {subject_id}? their personal data becomes unreadable",
                      abort=True)  # fmt: skip
    r = app.subjects.erase(subject_id, cli_actor())
    emit(as_json, r, f"erased subject {subject_id} (request {r['request']}): key deleted "
                     f"{r['key_deleted']}, {r['online_rows_dropped']} online rows dropped")  # fmt: skip


@subject.command("object")
@click.argument("subject_id", metavar="SUBJECT")
@click.option("--decision", required=True, help="The decision's request id (its receipt).")
@click.option("--reason", default="", help="The subject's grounds.")
@json_option
@service
def subject_object(app: Appliance, subject_id: str, decision: str, reason: str,
                   as_json: bool) -> None:  # fmt: skip
    """Object to an automated decision: opens a human-review item.

    \b
    Example:
        falaj subject object 100405 --decision 3f2a... --reason "my income is wrong"
    """
    r = app.subjects.object(subject_id, decision, reason, cli_actor())
    emit(as_json, r, f"objection recorded (request {r['request']}); review {r['review']} is open")


@subject.command("requests")
@click.argument("subject_id", metavar="SUBJECT", required=False)
@json_option
@service
def subject_requests(app: Appliance, subject_id: str | None, as_json: bool) -> None:
    """Data-subject requests, newest first.

    \b
    Example:
        falaj subject requests 100405
    """
    rows = app.subjects.requests(cli_actor(), subject=subject_id)
    emit(as_json, rows, "\n".join(
        f"#{r['id']} {r['subject']} {r['kind']} {r['status']} {r['requested_at']} "
        f"by {r['requested_by']}" for r in rows) or "no requests")  # fmt: skip


# -- the review queue ------------------------------------------------------------------------


@cli.group()
def review() -> None:
    """The human-review queue of objections to automated decisions.

    \b
    Example:
        falaj review list --status open
        falaj review decide 3 --outcome overturn --note "income was misread"
    """


@review.command("list")
@click.option("--status", type=click.Choice(["open", "upheld", "overturned"]), default=None)
@json_option
@service
def review_list(app: Appliance, status: str | None, as_json: bool) -> None:
    """Review items, newest first.

    \b
    Example:
        falaj review list --status open
    """
    rows = app.reviews.list(cli_actor(), status=status)
    emit(as_json, rows, "\n".join(
        f"#{r['id']} {r['status']} subject {r['subject']} decision {r['decision_id']}: "
        f"{r['reason'] or '-'}" + (f" -> {r['note']}" if r["note"] else "")
        for r in rows) or "no reviews")  # fmt: skip


@review.command("decide")
@click.argument("review_id", type=int)
@click.option("--outcome", type=click.Choice(["uphold", "overturn"]), required=True)
@click.option("--note", default="", help="The reviewer's reasons.")
@json_option
@service
def review_decide(app: Appliance, review_id: int, outcome: str, note: str, as_json: bool) -> None:
    """Record a review's outcome (audited; once).

    \b
    Example:
        falaj review decide 3 --outcome uphold --note "checked with the credit officer"
    """
    r = app.reviews.decide(review_id, outcome, note, cli_actor())
    emit(as_json, r, f"review {review_id}: {r['status']} by {r['decided_by']}")


# -- the record of processing ------------------------------------------------------------------


@cli.group()
def compliance() -> None:
    """The record of processing activities.

    \b
    Example:
        falaj compliance record --format csv --out ropa.csv
    """


@compliance.command("record")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json",
              show_default=True)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@service
def compliance_record(app: Appliance, fmt: str, out: Path | None) -> None:
    """Export the record of processing activities: purposes, legal bases, the tables
    and models processing personal data, retention, recipients, residency.

    \b
    Example:
        falaj compliance record --out ropa.json
    """
    rec = app.processing_record(cli_actor())
    text = processing_csv(rec) if fmt == "csv" else json.dumps(rec, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        publish(out, text)
        click.echo(f"record of processing activities -> {out}")
