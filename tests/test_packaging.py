"""The service and container files refer to things that exist."""

import configparser
import subprocess
from pathlib import Path

from appliance import settings
from appliance.cli import cli

ROOT = Path(__file__).parent.parent


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((ROOT / "systemd" / "falaj.service").read_text())
    return parser


def test_unit_runs_falaj_with_real_settings_and_a_credential():
    svc = unit()["Service"]
    assert svc["ExecStart"].split()[1:] == ["run"] and svc["ExecStart"].endswith("/bin/falaj run")
    assert svc["ExecStartPre"].endswith("/bin/falaj init")
    assert {"run", "init"} <= set(cli.commands)
    lines = (ROOT / "systemd" / "falaj.service").read_text().splitlines()
    envs = [
        line.removeprefix("Environment=").split("=")[0]
        for line in lines
        if line.startswith("Environment=")
    ]
    assert "FALAJ_HOME" in envs
    known = {s.env for s in settings.SETTINGS}
    assert set(envs) <= known, f"falaj.service sets unknown settings {set(envs) - known}"
    assert svc["LoadCredential"].startswith("falaj-master-key:")  # the name keys.py looks for
    assert svc["ReadWritePaths"] == "/var/lib/falaj" and svc["User"] == "falaj"


def test_install_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "systemd" / "install.sh")]).returncode == 0


def test_dockerfile_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    for pkg in ("appliance", "kernels", "webui"):
        assert f"COPY {pkg} ./{pkg}" in text
    assert 'CMD ["falaj", "run"]' in text and "FALAJ_HOME=/var/lib/falaj" in text
