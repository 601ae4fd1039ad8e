"""The signed offline installer: everything an air-gapped box needs, in one folder.

``build(out)`` writes, for this platform and Python::

    wheelhouse/          falaj's own wheel, built from the source tree, and every dependency
                         wheel (``pip download --only-binary :all:`` through the configured index)
    requirements.lock    ``name==version --hash=sha256:...`` for every wheel
    sbom.cdx.json        CycloneDX 1.6: every component with its version, purl and SHA-256
    systemd/             falaj.service, falaj.sysusers, falaj.tmpfiles
    install.sh           checks the signature and every hash, then installs (systemd/install.sh)
    README.md
    MANIFEST.json        the SHA-256 of every file above
    MANIFEST.sig         a detached Ed25519 signature over MANIFEST.json's bytes
    signing-key.pub      the public key (PEM); its fingerprint is compared out of band

The fingerprint is the SHA-256 of the raw 32-byte public key, in hex: ``install.sh
--expect-key`` takes it, and it is what ``falaj bundle`` prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.parser import HeaderParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import BadInput, CheckFailed

FORMAT = "falaj-bundle/1"
# files beside the manifest that it cannot list: itself, its signature and the key
UNLISTED = ("MANIFEST.json", "MANIFEST.sig", "signing-key.pub")
SYSTEMD_FILES = ("falaj.service", "falaj.sysusers", "falaj.tmpfiles")
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "results")


def source_tree() -> Path:
    """The falaj source checkout this package runs from (the bundle builds its wheel)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.exists() or 'name = "falaj"' not in pyproject.read_text():
        raise BadInput(
            "falaj bundle builds from a source checkout; run it from one (pip install -e .)"
        )
    return root


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"--signing-key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadInput(
            f"--signing-key {path}: not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"--signing-key {path}: not an Ed25519 key")
    return key


def new_signing_key(path: Path) -> Ed25519PrivateKey:
    """A fresh key, written 0600 to ``path`` (never over an existing file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BadInput(
            f"{path} exists: sign with it (--signing-key {path}) or move it away"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def normal_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise CheckFailed(f"wheelhouse: {filename} is not a wheel file name")
    return normal_name(parts[0]), parts[1]


def wheel_metadata(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(z.read(name).decode("utf-8", "replace"))
    return {"summary": meta.get("Summary"), "license": meta.get("License-Expression")}


def purl(name: str, version: str) -> str:
    return f"pkg:pypi/{name}@{quote(version, safe='')}"


def lock_lines(wheels: list[dict[str, Any]]) -> str:
    lines = ["# falaj offline bundle: every wheel in wheelhouse/, pinned with its SHA-256", ""]
    lines += [f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}" for w in wheels]
    return "\n".join(lines) + "\n"


def component(w: dict[str, Any], kind: str = "library") -> dict[str, Any]:
    c: dict[str, Any] = {
        "type": kind,
        "bom-ref": w["purl"],
        "name": w["name"],
        "version": w["version"],
        "purl": w["purl"],
        "hashes": [{"alg": "SHA-256", "content": w["sha256"]}],
    }
    if w.get("summary"):
        c["description"] = w["summary"]
    if w.get("license"):
        c["licenses"] = [{"expression": w["license"]}]
    return c


def sbom(wheels: list[dict[str, Any]], falaj_version: str) -> dict[str, Any]:
    """CycloneDX 1.6 JSON: falaj as the described application, the other wheels as its
    components, each with version, purl and SHA-256."""
    own = next(w for w in wheels if w["name"] == "falaj")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [
                {"type": "application", "name": "falaj bundle", "version": falaj_version}
            ]},
            "component": component(own, "application"),
            "properties": [
                {"name": "falaj:python", "value": platform.python_version()},
                {"name": "falaj:platform", "value": sysconfig.get_platform()},
            ],
        },
        "components": [component(w) for w in wheels if w["name"] != "falaj"],
    }  # fmt: skip


def pip(*args: str, say: Callable[[str], None]) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-5:])
        raise CheckFailed(f"pip {args[0]} failed:\n{tail}")


def build_wheel(source: Path, into: Path, say: Callable[[str], None]) -> Path:
    """falaj's wheel, built from a copy of the tree (the checkout is left untouched)."""
    with tempfile.TemporaryDirectory(prefix="falaj-src-") as tmp:
        copy = Path(tmp) / "falaj"
        copy.mkdir()
        for name in SOURCE_FILES:
            if (source / name).exists():
                shutil.copy2(source / name, copy / name)
        find = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]
        for pattern in find["packages"]["find"]["include"]:
            top = pattern.rstrip("*")
            if (source / top).is_dir():
                shutil.copytree(source / top, copy / top, ignore=SKIP)
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(copy), say=say)
    (wheel,) = into.glob("falaj-*.whl")
    return wheel


def build(
    out: Path,
    *,
    gpu: bool = False,
    signing_key: Path | None = None,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Build the bundle into ``out`` (absent or empty); return what was built."""
    started = time.monotonic()
    source = source_tree()
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--out {out}: exists and is not an empty folder")
    key_path = None
    if signing_key is not None:
        key = load_signing_key(signing_key)
    else:
        key_path = out.parent / f"{out.name}-signing-key.pem"
        out.parent.mkdir(parents=True, exist_ok=True)
        key = new_signing_key(key_path)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        wheelhouse = work / "wheelhouse"
        wheelhouse.mkdir()
        with tempfile.TemporaryDirectory(prefix="falaj-wheel-") as built:
            say("building falaj's wheel from the source tree")
            own = build_wheel(source, Path(built), say)
            version = wheel_name_version(own.name)[1]
            shutil.copy2(own, wheelhouse / own.name)
            req = f"falaj[gpu] @ {own.as_uri()}" if gpu else str(own)
            say("downloading the dependency wheels" + (" (with the GPU extra)" if gpu else ""))
            pip("download", "--quiet", "--only-binary", ":all:", "--dest", str(wheelhouse), req,
                say=say)  # fmt: skip
        wheels = []
        for path in sorted(wheelhouse.iterdir()):
            name, ver = wheel_name_version(path.name)
            wheels.append({"file": path.name, "name": name, "version": ver,
                           "sha256": sha256_file(path), "purl": purl(name, ver),
                           **wheel_metadata(path)})  # fmt: skip
        names = [w["name"] for w in wheels]
        if len(set(names)) != len(names):
            raise CheckFailed(f"wheelhouse: more than one wheel of {sorted(names)}")
        (work / "requirements.lock").write_text(lock_lines(wheels))
        (work / "sbom.cdx.json").write_text(json.dumps(sbom(wheels, version), indent=2) + "\n")
        (work / "systemd").mkdir()
        for name in SYSTEMD_FILES:
            shutil.copy2(source / "systemd" / name, work / "systemd" / name)
        shutil.copy2(source / "systemd" / "install.sh", work / "install.sh")
        os.chmod(work / "install.sh", 0o755)
        shutil.copy2(source / "README.md", work / "README.md")
        files = {
            p.relative_to(work).as_posix(): sha256_file(p)
            for p in sorted(work.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format": FORMAT,
            "falaj": version,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platform": sysconfig.get_platform(),
            "gpu": gpu,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": files,
        }
        body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        (work / "MANIFEST.json").write_bytes(body)
        (work / "MANIFEST.sig").write_bytes(key.sign(body))
        public = key.public_key()
        (work / "signing-key.pub").write_bytes(
            public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "out": str(out),
        "falaj": version,
        "wheels": len(wheels),
        "bytes": size,
        "gpu": gpu,
        "fingerprint": fingerprint(public),
        "new_signing_key": str(key_path) if key_path else None,
        "seconds": round(time.monotonic() - started, 1),
    }


def verify(bundle: Path, expect_key: str | None = None) -> dict[str, Any]:
    """The same checks install.sh makes, in Python: the key's fingerprint, the signature
    over MANIFEST.json and every file's SHA-256 (no file missing, none extra)."""
    from cryptography.exceptions import InvalidSignature

    try:
        public = serialization.load_pem_public_key((bundle / "signing-key.pub").read_bytes())
        body = (bundle / "MANIFEST.json").read_bytes()
        sig = (bundle / "MANIFEST.sig").read_bytes()
    except (OSError, ValueError) as exc:
        raise CheckFailed(f"{bundle}: not a falaj bundle ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise CheckFailed("signing-key.pub: not an Ed25519 key")
    fp = fingerprint(public)
    if expect_key is not None and normal_fingerprint(expect_key) != fp:
        raise CheckFailed(f"signing key fingerprint {fp} is not the expected {expect_key}")
    try:
        public.verify(sig, body)
    except InvalidSignature:
        raise CheckFailed(
            "MANIFEST.sig: the signature over MANIFEST.json does not verify"
        ) from None
    files = json.loads(body)["files"]
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    problems = [
        f"{rel}: not in the manifest" for rel in sorted(present - set(files) - set(UNLISTED))
    ]
    for rel, digest in sorted(files.items()):
        path = bundle / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: SHA-256 does not match the manifest")
    if problems:
        raise CheckFailed("; ".join(problems))
    return {"fingerprint": fp, "files": len(files)}


def normal_fingerprint(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower().removeprefix("sha256:"))
