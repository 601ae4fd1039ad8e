"""`falaj install-service`: put the hardened unit, the sysusers and tmpfiles snippets and the
master key in place, then enable the service.

Against the real root (``/``) it also runs systemd-sysusers, systemd-tmpfiles, systemd-creds
(to encrypt the master key where a TPM2 or the host key allows) and systemctl, each when
present; with ``root=`` another folder (tests, image builds) it only writes the files.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import BadInput, CheckFailed
from appliance.keys import CREDENTIAL_NAME, KEY_BYTES

DEFAULT_PREFIX = Path("/opt/falaj")
UNIT = "falaj.service"


def default_source() -> Path:
    """The systemd/ folder of the source checkout (a bundle passes its own)."""
    return Path(__file__).resolve().parents[2] / "systemd"


def lan_ranges(allow: list[str]) -> list[str]:
    nets = []
    for text in allow:
        try:
            nets.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise BadInput(f"--allow {text!r}: not an IP address or CIDR range") from None
    return nets


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


def under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def install(
    *,
    source: Path | None = None,
    root: Path = Path("/"),
    prefix: Path = DEFAULT_PREFIX,
    allow: list[str] | None = None,
    local_only: bool = False,
    start: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    source = source or default_source()
    missing = [n for n in ("falaj.service", "falaj.sysusers", "falaj.tmpfiles") if not (source / n).is_file()]  # fmt: skip
    if missing:
        raise BadInput(f"--source {source}: missing {', '.join(missing)}")
    nets = lan_ranges(allow or [])
    live = root.resolve() == Path("/")
    if live and os.geteuid() != 0:
        raise BadInput("install-service writes /etc and runs systemctl: run it as root")
    written = []

    for name, folder in (("falaj.sysusers", "sysusers.d"), ("falaj.tmpfiles", "tmpfiles.d")):
        path = under(root, f"/etc/{folder}/falaj.conf")
        write(path, (source / name).read_text())
        written.append(path)

    dropins = under(root, f"/etc/systemd/system/{UNIT}.d")
    network = dropins / "network.conf"
    # the LAN ranges: replaced by --allow, removed by --local-only, else kept as they are
    # (an upgrade's install-service must not cut the LAN off)
    if nets and local_only:
        raise BadInput("--allow and --local-only contradict each other: give one")
    if nets:
        write(network, "# LAN ranges allowed to reach the dashboard and API "
              "(falaj install-service --allow)\n[Service]\n" +
              "".join(f"IPAddressAllow={n}\n" for n in nets))  # fmt: skip
        written.append(network)
    elif local_only and network.exists():
        network.unlink()
    elif network.exists():
        nets = [line.split("=", 1)[1].strip() for line in network.read_text().splitlines()
                if line.startswith("IPAddressAllow=")]  # fmt: skip

    if live:
        sysusers_and_tmpfiles(say)
    key = under(root, "/etc/falaj/master.key")
    cred = key.with_name("master.key.cred")
    created_key = False
    # an encrypted key from an earlier install is the key (its plain copy may have been
    # moved offline, as the README says): never make a new one beside it
    if not key.exists() and not cred.exists():
        key.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
        created_key = True
        say(f"generated {key}: copy it to offline backup media, the stores cannot be read without it")  # fmt: skip
    encrypted = cred.exists() or (live and encrypt_credential(key, cred, say))
    unit = (source / "falaj.service").read_text()
    if prefix != DEFAULT_PREFIX:
        unit = unit.replace(f"{DEFAULT_PREFIX}/", f"{prefix}/")
    if encrypted:
        plain = f"LoadCredential={CREDENTIAL_NAME}:/etc/falaj/master.key"
        if plain not in unit:
            raise CheckFailed(f"{source / 'falaj.service'}: no {plain} line to replace")
        unit = unit.replace(
            plain, f"LoadCredentialEncrypted={CREDENTIAL_NAME}:/etc/falaj/master.key.cred"
        )
    unit_path = under(root, f"/etc/systemd/system/{UNIT}")
    write(unit_path, unit)
    written.insert(0, unit_path)

    enabled = False
    if live and shutil.which("systemctl"):
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "enable", *(["--now"] if start else []), UNIT])
        enabled = True
    elif live:
        say("systemctl not found: enable falaj.service by hand")
    return {
        "root": str(root),
        "prefix": str(prefix),
        "files": [str(p) for p in written],
        "allow": ["localhost", *nets],
        "master_key": str(key),
        "created_key": created_key,
        "encrypted_credential": encrypted,
        "enabled": enabled,
    }


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip()}")


def sysusers_and_tmpfiles(say: Callable[[str], None]) -> None:
    if shutil.which("systemd-sysusers"):
        run(["systemd-sysusers", "/etc/sysusers.d/falaj.conf"])
    else:
        r = subprocess.run(["id", "falaj"], capture_output=True)
        if r.returncode != 0:
            run(["useradd", "--system", "--home-dir", "/var/lib/falaj", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", "falaj"])  # fmt: skip
    if shutil.which("systemd-tmpfiles"):
        run(["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/falaj.conf"])
    else:
        for folder, owner in (("/var/lib/falaj", "falaj:falaj"), ("/var/cache/falaj", "falaj:falaj"),
                              ("/etc/falaj", "root:falaj")):  # fmt: skip
            os.makedirs(folder, mode=0o750, exist_ok=True)
            run(["chown", owner, folder])


def encrypt_credential(key: Path, cred: Path, say: Callable[[str], None]) -> bool:
    """Encrypt the master key with systemd-creds (TPM2 or the host key) into ``cred``, which
    the installed unit then loads with LoadCredentialEncrypted=; False (the unit keeps the
    plain LoadCredential=) where it cannot."""
    if not shutil.which("systemd-creds") or not key.exists():
        return False
    r = subprocess.run(
        ["systemd-creds", "encrypt", f"--name={CREDENTIAL_NAME}", str(key), str(cred)],
        capture_output=True, text=True,
    )  # fmt: skip
    if r.returncode != 0:
        say(f"systemd-creds could not encrypt the key ({r.stderr.strip()}); "
            "the unit loads it with LoadCredential=")  # fmt: skip
        return False
    os.chmod(cred, 0o600)
    say(f"encrypted the master key into {cred}; once the service starts, move {key} to "
        "offline backup media")  # fmt: skip
    return True
