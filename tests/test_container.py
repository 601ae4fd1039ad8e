"""The container image: built and run where a Docker daemon answers; its Dockerfile's
settings checked everywhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def docker_works() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def test_final_image_is_slim_and_runs_as_a_non_root_user():
    steps = instructions()
    args = {rest.split("=")[0]: rest.split("=", 1)[1] for word, rest in steps if word == "ARG" and "=" in rest}  # fmt: skip
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build"), "a build stage, then the image"
    base = froms[-1].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"])
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    final = final_stage()
    (user,) = [rest for word, rest in final if word == "USER"]
    assert user.split(":")[0] not in ("root", "0", "")
    assert "--uid 10001" in DOCKERFILE and user == "10001:10001"
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/falaj/venv /opt/falaj/venv"], "only the venv is carried"


def test_home_on_a_volume_healthcheck_and_the_key_from_a_secret():
    final = final_stage()
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "FALAJ_HOME=/var/lib/falaj" in env
    assert [rest for word, rest in final if word == "VOLUME"] == ['["/var/lib/falaj"]']
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in health and "--interval=" in health
    assert "FALAJ_MASTER_KEY_FILE=/run/secrets/falaj-master-key" in env
    # the entry point refuses to start without the secret instead of minting a key
    (entry,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert 'test -r \\"$FALAJ_MASTER_KEY_FILE\\"' in entry and "exit 2" in entry


def secrets_in(text: str) -> list[str]:
    """ENV or ARG names that look like a secret and carry a value other than a secret
    file's path (BUNDLE_KEY is the bundle's public-key fingerprint, not a secret)."""
    found = []
    for word, rest in instructions(text):
        if word in ("ENV", "ARG"):
            for name, value in re.findall(r'([A-Za-z_]\w*)=("[^"]*"|\S*)', rest):
                secretive = re.search(r"KEY|SECRET|PASSWORD|TOKEN", name.upper())
                if secretive and name != "BUNDLE_KEY" and not value.strip('"').startswith("/run/"):
                    found.append(name)
    return found


def test_no_key_or_secret_in_env_or_arg():
    assert secrets_in(DOCKERFILE) == []
    assert secrets_in(DOCKERFILE + "\nENV FALAJ_MASTER_KEY=ab12 OTHER=1\nARG API_TOKEN=x\n") == [
        "FALAJ_MASTER_KEY",
        "API_TOKEN",
    ]


def test_beyond_loopback_only_with_tls():
    """The image listens on 0.0.0.0, which `falaj run` serves only over HTTPS: nothing in
    the image turns TLS off, and the health check speaks HTTPS."""
    env = " ".join(rest for word, rest in final_stage() if word == "ENV")
    assert "FALAJ_HOST=0.0.0.0" in env and "FALAJ_TLS=off" not in DOCKERFILE
    from appliance import tls
    from appliance.errors import BadInput

    with pytest.raises(BadInput, match="refusing plain HTTP"):
        tls.plan({"tls": "off", "host": "0.0.0.0", "tls_cert": "", "tls_key": "",
                  "home": "/nonexistent"})  # fmt: skip
    assert "https://127.0.0.1:8080/healthz" in DOCKERFILE


def test_dockerignore_keeps_keys_and_homes_out_of_the_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", "var", ".git", "*-signing-key.pem"):
        assert entry in ignored


@pytest.mark.slow
@pytest.mark.skipif(not docker_works(), reason="no Docker daemon answers `docker info` here")
def test_image_builds_runs_healthy_as_non_root_and_refuses_without_a_key(tmp_path):
    tag = "falaj-test:latest"
    r = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    try:
        r = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True)
        assert r.returncode == 2 and "no master key" in r.stderr
        key = tmp_path / "master.key"
        key.write_text("ab" * 32)
        key.chmod(0o644)  # the container's user must read the bind-mounted secret
        name = f"falaj-test-{int(time.time())}"
        subprocess.run(["docker", "run", "-d", "--name", name, "-v",
                        f"{key}:/run/secrets/falaj-master-key:ro", tag], check=True,
                       capture_output=True)  # fmt: skip
        try:
            for _ in range(90):
                state = json.loads(subprocess.run(
                    ["docker", "inspect", "--format", "{{json .State}}", name],
                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
                if state.get("Health", {}).get("Status") == "healthy" or not state["Running"]:
                    break
                time.sleep(2)
            assert state["Running"] and state["Health"]["Status"] == "healthy", state
            uid = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True,
                                 text=True, check=True).stdout.strip()  # fmt: skip
            assert uid == "10001"
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
