"""The signed offline installer: `falaj bundle` builds it once for the module; its
install.sh installs into a fresh venv inside a network namespace with no network, and the
installed `falaj` runs init, ingest, train and run; a changed byte of one wheel stops the
install on the hash, or on the signature when the manifest is edited to match, and
nothing is installed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from appliance.cli import cli
from appliance.ops import bundle as bundle_mod

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow
# a clean environment for install.sh and the installed falaj: no pip settings, no FALAJ_*,
# no simulator switches from conftest
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unshare_works() -> str | None:
    if not shutil.which("unshare"):
        return "unshare is not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"unshare -n is not permitted here: {r.stderr.strip()}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The bundle, built once: (folder, the command's JSON result, its stderr)."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("dist") / "falaj-bundle"
    started = time.monotonic()
    r = CliRunner().invoke(cli, ["bundle", "--out", str(out), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output + r.stderr
    print(f"falaj bundle: {time.monotonic() - started:.1f} s")
    return out, json.loads(r.stdout), r.stderr


@pytest.fixture
def scratch():
    """A folder for venvs: RAM (/dev/shm) when there is one, a third of the install time."""
    # a container's /dev/shm is often 64 MB: the venv needs about 1.6 GB
    roomy = os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 3 << 30
    base = "/dev/shm" if roomy else None
    path = Path(tempfile.mkdtemp(prefix="falaj-install-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def install(bundle: Path, venv: Path, *extra: str, expect: str | None = None, net: bool = False):
    cmd = [str(bundle / "install.sh"), "--venv", str(venv), *extra]
    if expect is not None:
        cmd += ["--expect-key", expect]
    if not net:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=venv.parent)


def tampered_copy(bundle: Path) -> Path:
    """The bundle as hard links beside it (cheap), to change files in by replacing them."""
    copy = Path(tempfile.mkdtemp(prefix="tampered-", dir=bundle.parent)) / "bundle"
    shutil.copytree(bundle, copy, copy_function=os.link)
    return copy


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.unlink()  # break the hard link: the original stays as built
    path.write_bytes(bytes(data))


def smallest_wheel(bundle: Path) -> Path:
    return min((bundle / "wheelhouse").glob("*.whl"), key=lambda p: p.stat().st_size)


def test_bundle_holds_locked_wheels_an_sbom_and_a_signed_manifest(built):
    out, result, stderr = built
    wheels = sorted((out / "wheelhouse").glob("*.whl"))
    names = {bundle_mod.wheel_name_version(w.name)[0] for w in wheels}
    assert {"falaj", "duckdb", "sqlcipher3", "torch", "numba", "flask"} <= names
    assert "cupy-cuda12x" not in names  # the GPU extra only with --gpu
    assert result["wheels"] == len(wheels) and result["gpu"] is False

    # the lock: every wheel, pinned, with the SHA-256 of the file in the wheelhouse
    lock = [line for line in (out / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")]  # fmt: skip
    assert len(lock) == len(wheels)
    by_file = {bundle_mod.wheel_name_version(w.name): sha256(w) for w in wheels}
    for line in lock:
        pin, digest = line.split(" --hash=sha256:")
        name, version = pin.split("==")
        assert by_file[(name, version)] == digest

    # the SBOM: CycloneDX 1.6, valid against its schema, every component with its
    # version, purl and the SHA-256 of its wheel
    text = (out / "sbom.cdx.json").read_text()
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    components = [doc["metadata"]["component"], *doc["components"]]
    assert {c["name"] for c in components} == names and len(components) == len(wheels)
    for c in components:
        (h,) = c["hashes"]
        assert h["alg"] == "SHA-256" and h["content"] == by_file[(c["name"], c["version"])]
        assert c["purl"] == f"pkg:pypi/{c['name']}@{c['version'].replace('+', '%2B')}"

    # the manifest lists every file but itself, its signature and the key
    manifest = json.loads((out / "MANIFEST.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - set(bundle_mod.UNLISTED)
    assert {"install.sh", "requirements.lock", "sbom.cdx.json", "systemd/falaj.service",
            "systemd/falaj.sysusers", "systemd/falaj.tmpfiles"} <= set(manifest["files"])  # fmt: skip
    assert all(sha256(out / rel) == digest for rel, digest in manifest["files"].items())
    assert os.access(out / "install.sh", os.X_OK)

    # signed by the new key written beside the bundle (0600), whose fingerprint was printed
    key_file = Path(result["new_signing_key"])
    assert key_file.parent == out.parent and key_file.stat().st_mode & 0o777 == 0o600
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    fp = bundle_mod.fingerprint(private.public_key())
    assert result["fingerprint"] == fp and "keep it off the air-gapped box" in stderr
    private.public_key().verify((out / "MANIFEST.sig").read_bytes(),
                                (out / "MANIFEST.json").read_bytes())  # fmt: skip
    assert bundle_mod.verify(out, expect_key=fp)["files"] == len(manifest["files"])
    if shutil.which("openssl"):  # what install.sh runs
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                            str(out / "signing-key.pub"), "-rawin", "-in", str(out / "MANIFEST.json"),
                            "-sigfile", str(out / "MANIFEST.sig")], capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0 and "Signature Verified Successfully" in r.stdout


def test_offline_install_into_a_venv_then_init_ingest_train_run(built, scratch, tmp_path):
    reason = unshare_works()
    if reason:
        pytest.skip(reason)
    out, result, _ = built
    venv = scratch / "venv"
    started = time.monotonic()
    # --no-compile: a third of the time (torch and sympy's byte-compiling dominates)
    r = install(out, venv, "--no-compile", expect=result["fingerprint"])
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"install.sh --venv (no network): {took:.1f} s")
    assert f"signature by {result['fingerprint']} verified" in r.stdout
    assert "every file matches the manifest" in r.stdout
    # installed, not linked to the source tree
    where = subprocess.run([str(venv / "bin/python"), "-c", "import appliance; print(appliance.__file__)"],
                           capture_output=True, text=True, env=ENV, cwd=tmp_path)  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    script = tmp_path / "smoke.sh"
    script.write_text(f"""set -euo pipefail
ip link set lo up 2>/dev/null || true
export FALAJ_HOME={tmp_path / "home"} NUMBA_CACHE_DIR={scratch / "numba"}
F={venv / "bin/falaj"}
$F init
$F demo-data loans.parquet --rows 3000
$F ingest loans.parquet --table loans --entity customer_id --timestamp event_time
$F train --table loans --label default --name credit
$F run --port 18437 > run.log 2>&1 &
pid=$!
{venv / "bin/python"} - <<'PY'
import json, time, urllib.request
for _ in range(240):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:18437/healthz", timeout=2).read()
        print("healthz", json.loads(body)["status"])
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit("no answer on /healthz")
PY
kill -TERM $pid
wait $pid && echo "run stopped cleanly"
""")
    started = time.monotonic()
    r = subprocess.run(["unshare", "-n", "bash", str(script)], capture_output=True, text=True,
                       env=ENV, cwd=tmp_path, timeout=600)  # fmt: skip
    print(f"init, ingest, train, run (no network): {time.monotonic() - started:.1f} s")
    log = (tmp_path / "run.log").read_text() if (tmp_path / "run.log").exists() else ""
    assert r.returncode == 0, r.stdout + r.stderr + log
    assert "initialised:" in r.stdout
    assert "ingested 3000 rows into loans" in r.stdout
    assert "credit@1" in r.stderr + r.stdout
    assert "healthz ok" in r.stdout and "run stopped cleanly" in r.stdout


def test_a_changed_wheel_fails_on_its_hash_and_installs_nothing(built, scratch):
    out, result, _ = built
    copy = tampered_copy(out)
    wheel = smallest_wheel(copy)
    flip_one_byte(wheel)
    venv = scratch / "venv"
    r = install(copy, venv, expect=result["fingerprint"], net=unshare_works() is not None)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"wheelhouse/{wheel.name}: SHA-256 does not match the manifest" in r.stderr
    assert "nothing installed" in r.stderr and not venv.exists()
    assert (
        sha256(out / "wheelhouse" / wheel.name)
        == json.loads((out / "MANIFEST.json").read_text())["files"][f"wheelhouse/{wheel.name}"]
    )  # the shared bundle is untouched


def test_a_changed_wheel_with_its_manifest_updated_fails_on_the_signature(built, scratch):
    out, result, _ = built
    copy = tampered_copy(out)
    wheel = smallest_wheel(copy)
    flip_one_byte(wheel)
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    manifest["files"][f"wheelhouse/{wheel.name}"] = sha256(wheel)
    (copy / "MANIFEST.json").unlink()
    (copy / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    venv = scratch / "venv"
    r = install(copy, venv, expect=result["fingerprint"], net=unshare_works() is not None)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "signature over MANIFEST.json does not verify" in r.stderr
    assert "every file matches" not in r.stdout and not venv.exists()


def test_a_re_signed_manifest_with_a_stale_lock_fails_in_pip_and_leaves_no_venv(built, scratch):
    """Defence in depth: a wheel changed and the manifest re-signed (a stolen key), but the
    lock left alone: pip --require-hashes refuses, and the new venv is removed."""
    out, result, _ = built
    copy = tampered_copy(out)
    wheel = smallest_wheel(copy)
    flip_one_byte(wheel)
    manifest = json.loads((copy / "MANIFEST.json").read_text())
    manifest["files"][f"wheelhouse/{wheel.name}"] = sha256(wheel)
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    key = bundle_mod.load_signing_key(Path(result["new_signing_key"]))
    for name, data in (("MANIFEST.json", body), ("MANIFEST.sig", key.sign(body))):
        (copy / name).unlink()
        (copy / name).write_bytes(data)
    venv = scratch / "venv"
    r = install(copy, venv, expect=result["fingerprint"], net=unshare_works() is not None)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "every file matches the manifest" in r.stdout
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in r.stderr
    assert "nothing installed" in r.stderr and not venv.exists()


def test_an_extra_file_or_the_wrong_key_is_refused(built, scratch):
    out, result, _ = built
    fp = result["fingerprint"]
    venv = scratch / "venv"
    r = install(out, venv, net=True)  # no --expect-key: says which key, installs nothing
    assert r.returncode == 2 and f"signed by key {fp}" in r.stderr and not venv.exists()
    r = install(out, venv, expect="00" * 32, net=True)
    assert r.returncode == 1 and "not the expected" in r.stderr and not venv.exists()
    copy = tampered_copy(out)
    (copy / "wheelhouse" / "evil-1.0-py3-none-any.whl").write_bytes(b"PK")
    r = install(copy, venv, expect=fp.upper(), net=True)  # case and separators do not matter
    assert r.returncode == 1, r.stdout + r.stderr
    assert "wheelhouse/evil-1.0-py3-none-any.whl: not in the manifest" in r.stderr
    assert not venv.exists()


def test_bundle_refuses_a_used_folder_and_a_wrong_key(tmp_path, falaj):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    r = falaj("bundle", "--out", used)
    assert r.exit_code == 2 and "exists and is not an empty folder" in r.stderr
    not_ed = tmp_path / "rsa.pem"
    from cryptography.hazmat.primitives.asymmetric import ec

    not_ed.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    r = falaj("bundle", "--out", tmp_path / "b", "--signing-key", not_ed)
    assert r.exit_code == 2 and "not an Ed25519 key" in r.stderr
    assert not (tmp_path / "b").exists()
