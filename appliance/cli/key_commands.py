"""`falaj rekey` and `falaj selftest`: key rotation and the on-box self-test."""

from __future__ import annotations

import click

from appliance import rekey as rekey_mod
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
