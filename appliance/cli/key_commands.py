"""`falaj rekey` and `falaj selftest`: key rotation and the on-box self-test."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance import rekey as rekey_mod
from appliance import selftest as selftest_mod
from appliance.cli import cli, cli_actor, emit, json_option, service
from appliance.core import Appliance


@cli.command()
@json_option
@service
def rekey(app: Appliance, as_json: bool) -> None:
    """Rotate the master key and every key derived from it.

    Re-encrypts control.db (SQLCipher PRAGMA rekey) and features.duckdb (a copy under
    the new key), re-encrypts and re-signs every model bundle, records a keys.rotated
    audit event (the keys' fingerprints, never the keys) and writes the new key where
    the old one was read (keys/master.key or FALAJ_MASTER_KEY_FILE). Stop `falaj run`
    first. A crash at any point leaves a home that opens with the old or the new key.
    A systemd credential is read-only: the command prints the systemd-creds steps.

    \b
    Example:
        falaj rekey
        FALAJ_MASTER_KEY_FILE=/etc/falaj/master.key falaj rekey --json
    """
    say = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    r = rekey_mod.rotate(app, cli_actor(), say=say)
    text = (f"master key rotated: {r['old_key']} -> {r['new_key']} (fingerprints); "
            f"{r['rows']['features.duckdb']} feature rows, {r['rows']['control.db']} control "
            f"rows and {r['bundles']} bundles re-encrypted; new key in {r['key_file']}")  # fmt: skip
    emit(as_json, r, text)


@cli.command()
@click.option("--verify", "verify_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check a report's signature (and that this appliance made it) instead.")  # fmt: skip
@json_option
@service
def selftest(app: Appliance, verify_file: Path | None, as_json: bool) -> None:
    """Run the trust checks on this box and write a signed report.

    No plaintext in the home, temp folder or logs; a wrong key refused; the cipher
    settings; page damage, a cut audit tail and a rollback detected; modified, extra and
    foreign-signed bundles refused; no default login; the role matrix; TLS versions; no
    key material in the process's arguments, environment or logs. Checks work on copies.
    The report goes to HOME/selftest/ and its hash into the audit chain. Exit 1 when a
    check fails (or, with --verify, when the report does not verify).

    \b
    Example:
        falaj selftest
        falaj selftest --verify var/selftest/20261130T120000Z-3f2a1b4c5d6e.json
    """
    actor = cli_actor()
    if verify_file is not None:
        report = selftest_mod.load(verify_file)
        v = selftest_mod.verify(app, report, actor)
        text = (f"{verify_file.name}: signature verified, "
                f"{'signed by this appliance' if v.get('signed_by_current_key') else 'recorded in the audit chain'}; "
                f"{'all checks passed' if report.get('passed') else 'failed: ' + ', '.join(report.get('failed', []))}"
                if v["ok"] else f"{verify_file.name}: NOT VERIFIED: {v['reason']}")  # fmt: skip
        emit(as_json, v, text)
        if not v["ok"]:
            sys.exit(1)
        return
    say = (lambda msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    r = selftest_mod.run(app, actor, say=say)
    counts = {
        s: sum(c["status"] == s for c in r["checks"]) for s in ("passed", "failed", "skipped")
    }
    text = (f"self-test {'PASSED' if r['passed'] else 'FAILED'}: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped; signed report "
            f"{app.home.name}/{selftest_mod.DIR}/{r['file']} (sha256 {r['sha256'][:16]}...)")  # fmt: skip
    emit(as_json, r, text)
    if not r["passed"]:
        sys.exit(1)
