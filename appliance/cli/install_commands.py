"""`falaj bundle` and `falaj install-service`: the signed offline installer and the systemd service."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli import cli, emit, fail, json_option, os_error
from appliance.errors import FalajError


def say(msg: str) -> None:
    click.echo(msg, err=True)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the bundle to (absent or empty).")  # fmt: skip
@click.option("--gpu", is_flag=True, help="Add the GPU extra (CuPy) to the wheelhouse.")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Ed25519 private key (PEM) to sign with; default: a new one next to OUT.")  # fmt: skip
@json_option
def bundle(out: Path, gpu: bool, signing_key: Path | None, as_json: bool) -> None:
    """Build a signed offline installer for this platform and Python.

    Writes a wheelhouse (falaj and every dependency), a hash-locked requirements file,
    a CycloneDX SBOM, the systemd files, install.sh and MANIFEST.json signed with
    Ed25519. Compare the printed fingerprint out of band on the target box.

    \b
    Example:
        falaj bundle --out dist/falaj-bundle --signing-key ~/keys/falaj-release.pem
        sudo dist/falaj-bundle/install.sh --expect-key FINGERPRINT
    """
    from appliance.ops import bundle as bundle_mod

    try:
        result = bundle_mod.build(out, gpu=gpu, signing_key=signing_key, say=say)
    except FalajError as exc:
        fail(exc.message, exc.exit_code)
    except OSError as exc:
        fail(os_error(exc), 2)
    if result["new_signing_key"]:
        say(f"warning: signed with a new key, {result['new_signing_key']}: keep it off the "
            "air-gapped box, and sign later bundles with it (--signing-key)")  # fmt: skip
    text = (
        f"bundle: {result['out']} (falaj {result['falaj']}, {result['wheels']} wheels, "
        f"{result['bytes'] / 1e6:.0f} MB, {result['seconds']} s)\n"
        f"signing key fingerprint: {result['fingerprint']}\n"
        f"install: sudo {result['out']}/install.sh --expect-key {result['fingerprint']}"
    )
    emit(as_json, result, text)


@cli.command("install-service")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with falaj.service, falaj.sysusers, falaj.tmpfiles "
                   "[default: the checkout's systemd/].")  # fmt: skip
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Install under this root (only writes files when not /).")  # fmt: skip
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/opt/falaj"), show_default=True,
              help="Where falaj is installed (its venv is PREFIX/venv).")  # fmt: skip
@click.option("--allow", multiple=True, metavar="CIDR",
              help="A LAN range allowed to reach the service (repeatable; replaces the ranges "
                   "given before); loopback always is.")  # fmt: skip
@click.option("--local-only", is_flag=True,
              help="Remove the LAN ranges given before: only this box reaches the service.")  # fmt: skip
@click.option("--no-start", is_flag=True, help="Enable the service but do not start it now.")
@json_option
def install_service(source: Path | None, root: Path, prefix: Path, allow: tuple[str, ...],
                    local_only: bool, no_start: bool, as_json: bool) -> None:  # fmt: skip
    """Install the hardened systemd unit, its user and folders, and the master key, then
    enable falaj.service (as root).

    \b
    Example:
        sudo /opt/falaj/venv/bin/falaj install-service --allow 192.168.10.0/24
    """
    from appliance.ops import service

    try:
        result = service.install(source=source, root=root, prefix=prefix, allow=list(allow),
                                 local_only=local_only, start=not no_start, say=say)  # fmt: skip
    except FalajError as exc:
        fail(exc.message, exc.exit_code)
    except OSError as exc:
        fail(os_error(exc), 2)
    state = "enabled" if result["enabled"] else "installed (not enabled)"
    text = "\n".join(
        [f"falaj.service {state}; reachable from {', '.join(result['allow'])}",
         *(f"wrote {p}" for p in result["files"])]
    )  # fmt: skip
    emit(as_json, result, text)
