"""`falaj backup`, `falaj restore` and `falaj backups`."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from appliance import keys, tls
from appliance import settings as settings_mod
from appliance.cli import (
    cli,
    cli_actor,
    emit,
    fail,
    json_option,
    os_error,
    overriding,
    service,
)
from appliance.core import Appliance
from appliance.errors import FalajError, StoreBusy, Unavailable
from appliance.ops import backup as backups

REMOTE_TOKEN_TTL = "5m"  # the token the CLI mints for a running server's backup


def _summary(m: dict[str, Any]) -> str:
    tables = {t: n for t, n in m["rows"]["features.duckdb"].items() if not t.startswith("_")}
    models = ", ".join(f"{n}@{','.join(map(str, v))}" for n, v in m["models"].items()) or "none"
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(tables.items())) or "none"
    return (f"audit head {m['audit_head']['seq']}, models {models}, rows {rows}; "
            f"falaj {m['falaj']}, {m['created']}")  # fmt: skip


@cli.command("backup")
@overriding("host", "port")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default HOME/backups/backup-TIME.falaj-backup).")  # fmt: skip
@json_option
@service
def backup_cmd(app: Appliance, out: Path | None, as_json: bool) -> None:
    """Take an encrypted, signed backup of the home, while `falaj run` serves too.

    The file holds both stores, the model bundles, the audit checkpoints, the workspace
    and the settings, sealed with a key derived from the master key. The master key
    itself is NOT in it: keep it apart; restoring needs it. When a running server holds
    features.duckdb, that server takes the backup (the CLI asks it, with a token that
    lives five minutes, at the configured host and port, or --host/--port) and the CLI
    downloads it.

    \b
    Example:
        falaj backup --out /mnt/usb/falaj-2026-11-30.falaj-backup
    """
    actor = cli_actor()
    if out is not None and out.exists():
        fail(f"{out}: exists already; give another --out", 2)
    try:
        features = app.features
    except StoreBusy:
        result = _remote_backup(app, out, actor)
    else:
        result = backups.take(app, actor, out=out, features=features)
    m = result["manifest"]
    emit(as_json, result, f"backup {result['path']} ({result['bytes']:,} bytes): {_summary(m)}\n"
         "the master key is not in it: keep it apart, restoring needs it")  # fmt: skip


def _remote_backup(app: Appliance, out: Path | None, actor) -> dict[str, Any]:
    """Ask the `falaj run` holding this home's feature store to take the backup."""
    host, port = app.settings["host"], app.settings["port"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    plan = tls.plan(app.settings)
    context = None
    if plan.enabled:
        context = ssl.create_default_context(cafile=str(plan.cert) if plan.cert else None)
        context.check_hostname = False  # our own certificate, on this box
    base = f"{plan.scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
    token = app.auth.create_token("backup-cli", "platform-engineer", actor,
                                  expires=REMOTE_TOKEN_TTL)  # fmt: skip
    headers = {"Authorization": f"Bearer {token['token']}", "Content-Type": "application/json"}
    try:
        req = urllib.request.Request(base + "/api/v1/backups", data=b"{}", method="POST",
                                     headers=headers)  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=600, context=context) as r:
                result = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                why = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                why = exc.reason
            why = why.get("message", why) if isinstance(why, dict) else why
            raise FalajError(f"the running server on {base} refused the backup "
                             f"({exc.code}): {why}") from None  # fmt: skip
        except OSError as exc:
            raise Unavailable(
                f"features.duckdb is held by another process, and no server answers on "
                f"{base} ({getattr(exc, 'reason', exc)}): stop that process or back up "
                "through its server"
            ) from None
        result["path"] = str(app.home / backups.DIR / result["name"])
        if out is not None:
            req = urllib.request.Request(base + f"/api/v1/backups/{result['name']}",
                                         headers=headers)  # fmt: skip
            partial = out.with_name(f".{out.name}.partial")
            with (urllib.request.urlopen(req, timeout=600, context=context) as r,
                  open(partial, "wb") as f):  # fmt: skip
                while block := r.read(backups.CHUNK):
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, out)
            result |= {"path": str(out), "server_copy": result["path"]}
        return result | {"taken_by": base}
    finally:
        app.auth.revoke_token(token["id"], actor)


@cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--home", "target", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="New (or empty) folder to restore into [default: --home].")  # fmt: skip
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The master key file the backup was made with (copied into HOME/keys/); "
              "left out: the configured key (FALAJ_MASTER_KEY_FILE, systemd credential).")  # fmt: skip
@json_option
@click.pass_context
def restore_cmd(ctx: click.Context, file: Path, target: Path | None, key_file: Path | None,
                as_json: bool) -> None:  # fmt: skip
    """Restore a backup into a new home, checked whole before the home appears.

    Refuses (exit 1) a damaged, cut-short or foreign backup (one made with another
    master key), and (exit 2) a target folder that is not empty. The restored home
    passes `falaj check` and `falaj audit verify` before it is moved into place.

    \b
    Example:
        falaj restore /mnt/usb/falaj-2026-11-30.falaj-backup --home /var/lib/falaj \\
            --key /root/falaj-master.key
    """
    try:
        home = target or ctx.obj["overrides"].get("home") or os.environ.get("FALAJ_HOME")
        if not home:
            fail("give the folder to restore into with --home DIR", 2)
        config = settings_mod.load({"home": str(home)}, ctx.obj["config"])
        if key_file is not None:
            master, write_key = keys.read_key(key_file), True
        else:
            source = keys.key_source(Path(config["home"]), config["master_key_file"])
            if source == keys.default_key_path(Path(config["home"])):
                fail("give the master key the backup was made with: --key FILE (backups "
                     "never hold it)", 2)  # fmt: skip
            master, write_key = keys.read_key(source), False
        result = backups.restore(file, Path(config["home"]), master, cli_actor(), write_key)
    except FalajError as exc:
        fail(exc.message, exc.exit_code)
    except ValueError as exc:
        fail(str(exc), 2)
    except OSError as exc:
        fail(os_error(exc), 2)
    models = ", ".join(f"{n}@{','.join(map(str, v))}" for n, v in result["models"].items())
    emit(as_json, result, f"restored {result['backup']} (falaj {result['falaj']}, "
         f"{result['created']}) into {result['home']}: audit head {result['audit_head']['seq']}, "
         f"models {models or 'none'}; check and audit verify passed")  # fmt: skip


@cli.group("backups")
def backups_group() -> None:
    """The backups in HOME/backups (the dashboard's Operations page lists them too).

    \b
    Example:
        falaj backups list
    """


@backups_group.command("list")
@json_option
@service
def backups_list(app: Appliance, as_json: bool) -> None:
    """List the backups in HOME/backups, newest first, their manifests' signatures checked.

    \b
    Example:
        falaj backups list --json
    """
    items = backups.listing(app, cli_actor())
    lines = [f"{b['name']}  {b['bytes']:,} bytes  signature {b['signature']}"
             + (f"  audit head {b['audit_head']['seq']}, falaj {b['falaj']}"
                if b["signature"] == "verified" else f"  ({b['problem']})")
             for b in items]  # fmt: skip
    emit(as_json, items, "\n".join(lines) or "no backups in HOME/backups")


@backups_group.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@service
def backups_verify(app: Appliance, file: Path, as_json: bool) -> None:
    """Read a whole backup as a restore would (every chunk, the signature, every
    member's SHA-256), restoring nothing. Exit 1 when it is damaged or foreign.

    \b
    Example:
        falaj backups verify /mnt/usb/falaj-2026-11-30.falaj-backup
    """
    from appliance.auth import require

    require(cli_actor(), "backup.restore")
    m = backups.verify(file, app.master_key)
    emit(as_json, m, f"{file.name}: verified: {_summary(m)}")
