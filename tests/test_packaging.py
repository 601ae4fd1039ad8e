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
    assert svc["ExecStartPre"].endswith("/bin/falaj check")  # the last of init, check
    assert {"run", "init", "check"} <= set(cli.commands)
    lines = (ROOT / "systemd" / "falaj.service").read_text().splitlines()
    envs = [
        line.removeprefix("Environment=").split("=")[0]
        for line in lines
        if line.startswith("Environment=FALAJ_")
    ]
    assert "FALAJ_HOME" in envs
    known = {s.env for s in settings.SETTINGS}
    assert set(envs) <= known, f"falaj.service sets unknown settings {set(envs) - known}"
    assert svc["LoadCredential"].startswith("falaj-master-key:")  # the name keys.py looks for
    assert svc["StateDirectory"] == "falaj" and svc["User"] == "falaj"  # /var/lib/falaj


def test_install_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "systemd" / "install.sh")]).returncode == 0


def test_dockerfile_builds_from_every_package():
    """The image's build stage copies the context; .dockerignore keeps the packages in it."""
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY . ." in text and "pip install --quiet ." in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pkg in ("appliance", "kernels", "webui", "benchmarks", "pyproject.toml", "README.md"):
        assert pkg not in ignored
    assert 'CMD ["falaj", "run"]' in text and "FALAJ_HOME=/var/lib/falaj" in text


def test_bench_from_an_installed_package_writes_outside_it(tmp_path):
    """`falaj bench` from site-packages: results go to ./benchmark-results, and the
    package folder is left exactly as installed."""
    import shutil
    import sys

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "benchmarks", site / "benchmarks",
                    ignore=shutil.ignore_patterns("results", "__pycache__"))  # fmt: skip
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from benchmarks.__main__ import main; sys.exit(main(['--quick', '--only', 'histogram']))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(site)], cwd=work, capture_output=True,
                       text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                       "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (work / "benchmark-results" / "quick.json").exists()
    assert f"wrote {work / 'benchmark-results' / 'quick.json'}" in r.stdout
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
