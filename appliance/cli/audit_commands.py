"""`falaj audit checkpoint | checkpoints | prove | consistency | export`: signed
checkpoints and proofs over the audit log (``audit verify`` and ``audit tail`` live
beside the group, in ``appliance/cli/__init__.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import audit_group, cli_actor, emit, json_option, service
from appliance.core import Appliance


def _short(h: str) -> str:
    return f"{h[:16]}..."


@audit_group.command("checkpoint")
@click.option("--copy-to", type=click.Path(path_type=Path), default=None,
              help="Also publish the whole checkpoint log there (a file, or a folder to hold "
                   "checkpoints.log): a copy off the box, on a mounted USB stick say.")  # fmt: skip
@json_option
@service
def audit_checkpoint(app: Appliance, copy_to: Path | None, as_json: bool) -> None:
    """Sign the verified chain's size and Merkle root, and append it to the checkpoint log.

    The log (HOME/audit/checkpoints.log) is outside the store; each line carries its
    Ed25519 public key, so an outside verifier needs no secret. Exit 1 when the chain
    does not verify (nothing is signed then).

    \b
    Example:
        falaj audit checkpoint --copy-to /media/usb/falaj-checkpoints.log
    """
    c = app.audit.checkpoint(cli_actor(), copy_to=copy_to)
    text = (f"checkpoint {c['line_no']}: {c['size']} events, root {_short(c['root'])}, "
            f"signed by key {c['key_id']} at {c['time']}")  # fmt: skip
    if c.get("copied_to"):
        text += f"\nlog copied to {c['copied_to']}"
    emit(as_json, c, text)


@audit_group.command("checkpoints")
@click.option("-n", "count", type=int, default=10, show_default=True, help="How many.")
@json_option
@service
def audit_checkpoints(app: Appliance, count: int, as_json: bool) -> None:
    """List the latest signed checkpoints, newest first.

    \b
    Example:
        falaj audit checkpoints -n 5
    """
    rows = app.audit.checkpoints(cli_actor(), count)
    lines = [f"{c['line_no']:>5}  {c['time']}  {c['size']:>8} events  root {_short(c['root'])}  "
             f"key {c['key_id']}" for c in rows]  # fmt: skip
    emit(as_json, rows, "\n".join(lines) or "no checkpoints yet (falaj audit checkpoint)")


@audit_group.command("prove")
@click.argument("receipt")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the proof as JSON there, for python -m appliance.audit.verify_export.")  # fmt: skip
@json_option
@service
def audit_prove(app: Appliance, receipt: str, out: Path | None, as_json: bool) -> None:
    """Prove a decision: its record in its batch's Merkle root, and the batch's audit
    event in the tree the latest signed checkpoint covers.

    RECEIPT is the `receipt` (also `request_id`) a prediction answered with. Exit 1 while
    it is pending (its batch or a checkpoint covering it not written yet).

    \b
    Example:
        falaj audit prove 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e --out proof.json
    """
    p = app.audit.prove(receipt, cli_actor())
    if out is not None:
        import json

        out.write_text(json.dumps(p, indent=2))
    emit(as_json, p, "\n".join(_proof_lines(p)))


def _proof_lines(p: dict[str, Any]) -> list[str]:
    c, e = p["checkpoint"], p["event"]
    lines = [f"receipt {p['receipt']}: {p['model']}@{p['version']}, batch {p['batch']} "
             f"({p['batch_rows']} decisions)"]  # fmt: skip
    if p["kind"] == "merkle":
        for d in p["decisions"]:
            lines.append(f"  decision {d['index']}: leaf {_short(d['leaf'])}, {len(d['path'])} "
                         f"hashes to records_root {_short(p['records_root'])}")  # fmt: skip
    else:
        lines.append(f"  batch from before records_root: its records hash to "
                     f"records_sha256 {_short(p['records_sha256'])}")  # fmt: skip
    lines.append(f"  audit event {e['seq']} ({e['action']}): {len(p['event_path'])} hashes "
                 f"to the root of checkpoint {c['size']} ({_short(c['root'])})")  # fmt: skip
    lines.append(f"  checkpoint signed {c['time']} by key {c['key_id']}")
    lines.append("verified" if p["verified"] else "NOT VERIFIED")
    return lines


@audit_group.command("consistency")
@click.option("--from", "first", type=int, default=None,
              help="The older tree size [default: the checkpoint before the latest].")  # fmt: skip
@click.option("--to", "second", type=int, default=None,
              help="The newer tree size [default: the latest checkpoint].")  # fmt: skip
@json_option
@service
def audit_consistency(app: Appliance, first: int | None, second: int | None,
                      as_json: bool) -> None:  # fmt: skip
    """Prove the tree of the first FROM events is a prefix of the tree of TO (RFC 6962):
    nothing signed before was changed since.

    \b
    Example:
        falaj audit consistency --from 120 --to 480
    """
    c = app.audit.consistency(cli_actor(), first, second)
    text = (f"consistency {c['from']} -> {c['to']}: {len(c['proof'])} hashes, "
            f"root {_short(c['from_root'])} -> {_short(c['to_root'])}: "
            + ("verified" if c["verified"] else "NOT VERIFIED"))  # fmt: skip
    emit(as_json, c, text)
    if not c["verified"]:
        raise SystemExit(1)


@audit_group.command("export")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="The JSON file to write.")  # fmt: skip
@json_option
@service
def audit_export(app: Appliance, out: Path, as_json: bool) -> None:
    """Write every event and every signed checkpoint line to one JSON file, which
    `python -m appliance.audit.verify_export FILE` checks with no store, key or network.

    \b
    Example:
        falaj audit export --out audit.json
    """
    r = app.audit.export(cli_actor(), out)
    emit(as_json, r, f"exported {r['events']} events and {r['checkpoint_lines']} checkpoint "
                     f"lines to {r['out']}")  # fmt: skip
