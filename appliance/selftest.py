"""``falaj selftest``: the trust checks that can run on the box, and a signed report.

Each check works on copies, never on the live stores: snapshots of control.db and
features.duckdb and of one bundle, made under ``HOME/tmp/selftest-*`` (encrypted, as
the stores are) and removed afterwards. Each gives a name, passed (True, False, or None
when it could not run here, with the reason) and a detail. The report is signed with
Ed25519 by a key derived from the master key, written to ``HOME/selftest/`` and its
SHA-256 recorded in a ``selftest.report`` audit event, so a report stays provable after
the key rotates (``verify``: the signature, and either this home's current key or the
audit chain naming the report).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance import keys, tls
from appliance.auth import PERMISSIONS, SYSTEM, Actor, require
from appliance.errors import BadInput, BundleTampered, FalajError, NotFound, StoreError
from appliance.files import publish
from appliance.registry import bundles
from appliance.stores import ControlStore, FeatureStore
from appliance.stores import rekey as store_ops
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE

if TYPE_CHECKING:
    from appliance.core import Appliance

FORMAT = "falaj-selftest/1"
KEY_PURPOSE = "selftest-signing"
DIR = "selftest"
ROLES_OF_THE_ISSUE = ("admin", "viewer", "data-scientist", "ml-engineer", "data-engineer",
                      "platform-engineer", "compliance-officer")  # fmt: skip
# name/password pairs tried on top of each user's own name as password and DEFAULT_PASSWORDS
DEFAULT_PAIRS = (("admin", "admin"), ("admin", "password"), ("admin", ""), ("root", "root"),
                 ("falaj", "falaj"), ("administrator", "administrator"))  # fmt: skip
DEFAULT_PASSWORDS = ("admin", "password", "changeme", "falaj", "")
MAX_USERS = 20  # users tried with the default passwords (each try is one argon2id hash)
TEMP_BUDGET = 256 * 1024 * 1024  # bytes of the system temp folder read, at most
CHUNK = 4 * 1024 * 1024


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped (it could not run here; detail says why)
    detail: str

    @property
    def status(self) -> str:
        return {True: "passed", False: "failed", None: "skipped"}[self.passed]


def signing_key(master: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(keys.derive(master, KEY_PURPOSE))


def _public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def canonical(report: dict[str, Any]) -> bytes:
    body = {k: v for k, v in report.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def report_sha256(report: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(report)).hexdigest()


# -- the run -------------------------------------------------------------------------


def run(app: Appliance, actor: Actor, say: Callable[[str], None] = lambda m: None,
        temp_dirs: list[Path] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run every check, sign the report, write it and audit its hash; the report."""
    require(actor, "selftest.run")
    started = datetime.now(UTC)
    scratch = app.home / "tmp" / f"selftest-{os.getpid()}-{secrets.token_hex(4)}"
    scratch.mkdir(parents=True, mode=0o700)
    probe = Probe(app, scratch, temp_dirs)
    checks: list[Check] = []
    try:
        for name, fn in CHECKS:
            t0 = time.perf_counter()
            try:
                check = fn(probe)
            except FalajError as exc:
                check = Check(name, False, f"could not run: {_clean(exc.message, probe)}")
            except Exception as exc:  # a check that breaks is a failed check, named
                check = Check(name, False, f"could not run: {type(exc).__name__}: "
                                           f"{_clean(str(exc), probe)}")  # fmt: skip
            check.name, check.detail = name, _clean(check.detail, probe)  # no server paths
            checks.append(check)
            say(f"{check.status:>7}  {name} ({time.perf_counter() - t0:.1f} s): {check.detail}")
    finally:
        probe.close()
        shutil.rmtree(scratch, ignore_errors=True)
    signer = signing_key(app.master_key)
    failed = [c.name for c in checks if c.passed is False]
    report = {
        "format": FORMAT,
        "host": socket.gethostname(),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": str(actor),
        "master_key": keys.fingerprint(app.master_key),
        "passed": not failed,
        "failed": failed,
        "checks": [asdict(c) | {"status": c.status} for c in checks],
        "public_key": _public_hex(signer),
    }
    report["signature"] = signer.sign(canonical(report)).hex()
    digest = report_sha256(report)
    folder = app.home / DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    name = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{digest[:12]}.json"
    publish(folder / name, json.dumps(report, indent=2) + "\n")
    with app.control.transaction() as tx:
        tx.append_audit(actor, "selftest.report", name,
                        {"sha256": digest, "passed": report["passed"], "failed": failed,
                         "skipped": [c.name for c in checks if c.passed is None]})  # fmt: skip
    return report | {"file": name, "sha256": digest}


def latest(app: Appliance, actor: Actor) -> dict[str, Any]:
    """The newest report, with its verification."""
    require(actor, "selftest.run")
    folder = app.home / DIR
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        raise NotFound("no self-test report yet: run `falaj selftest`")
    report = json.loads(files[-1].read_text())
    return report | {"file": files[-1].name, "verification": verify(app, report, actor)}


def load(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError):
        raise BadInput(f"{path}: not a self-test report (not JSON)") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise BadInput(f"{path}: not a self-test report (format {FORMAT} expected)")
    return report


def verify(app: Appliance, report: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Whether ``report`` is one this appliance signed and has not changed since: its
    signature verifies under the key it names, and that key is this home's self-test key
    or the audit chain recorded the report's hash (a report from before a rotation)."""
    require(actor, "selftest.run")
    digest = report_sha256(report)
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(report["public_key"]))
        public.verify(bytes.fromhex(report["signature"]), canonical(report))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        return {"ok": False, "sha256": digest,
                "reason": "the signature does not verify: the report was changed"}  # fmt: skip
    ours = report["public_key"] == _public_hex(signing_key(app.master_key))
    audited = [e for e in app.control.audit_details("selftest.report") if e.get("sha256") == digest]
    if not ours and not audited:
        return {"ok": False, "sha256": digest,
                "reason": "signed by a key that is not this appliance's, and no audit event "
                          "records it"}  # fmt: skip
    return {"ok": True, "sha256": digest, "signed_by_current_key": ours,
            "audited": bool(audited)}  # fmt: skip


# -- what the checks share -------------------------------------------------------------


class Probe:
    """Lazily made copies of the stores, and what the checks learned along the way."""

    def __init__(self, app: Appliance, scratch: Path, temp_dirs: list[Path] | None) -> None:
        self.app, self.scratch = app, scratch
        self.temp_dirs = temp_dirs if temp_dirs is not None else [Path(tempfile.gettempdir())]
        self.master = app.master_key
        self.control_key = keys.derive(self.master, CONTROL_FILE)
        self.features_key = keys.derive(self.master, FEATURES_FILE)
        self.errors: list[str] = []  # every error message a wrong-key path gave
        self._n = 0

    def secrets(self) -> list[bytes]:
        """The key material that must never appear anywhere: raw, hex, HEX."""
        found = []
        for k in (self.master, self.control_key, self.features_key,
                  keys.derive(self.master, "bundle-encryption")):  # fmt: skip
            found += [k, k.hex().encode(), k.hex().upper().encode()]
        return found

    def control_copy(self) -> Path:
        self._n += 1
        dst = self.scratch / f"control-{self._n}.db"
        store_ops.snapshot_control(self.app.control, dst, self.control_key)
        return dst

    def features(self) -> FeatureStore:
        try:
            return self.app.features
        except StoreError as exc:
            raise Skipped(f"features.duckdb cannot be opened here ({exc.message}); run the "
                          "self-test in the serving process (dashboard or POST "
                          "/api/v1/selftest)") from None  # fmt: skip

    def features_copy(self) -> Path:
        store = self.features()
        self._n += 1
        dst = self.scratch / f"features-{self._n}.duckdb"
        store_ops.snapshot_features(store, dst)
        return dst

    def close(self) -> None:
        pass


class Skipped(Exception):
    """The check cannot run here; its message says why."""


def _clean(text: str, probe: Probe) -> str:
    """Server paths out of a detail that may be shown over HTTP."""
    home = str(probe.app.home)
    text = text.replace(str(probe.scratch), "<scratch>").replace(home + os.sep, "HOME/")
    return "HOME".join(text.rsplit(home, 1)) if text.endswith(home) else text


def _skippable(fn: Callable[[Probe], Check]) -> Callable[[Probe], Check]:
    def wrapper(probe: Probe) -> Check:
        try:
            return fn(probe)
        except Skipped as exc:
            return Check(fn.__name__, None, f"skipped: {exc}")

    wrapper.__name__ = fn.__name__
    return wrapper


# -- the checks ------------------------------------------------------------------------


def _needles(probe: Probe) -> list[bytes]:
    """Values from the feature tables, as text and (doubles) as raw little-endian bytes."""
    rows = store_ops.sample_rows(probe.features())
    text, binary = set(), set()
    for table_rows in rows.values():
        for row in table_rows:
            for v in row:
                if isinstance(v, str) and len(v) >= 8:
                    text.add(v.encode())
                elif isinstance(v, float) and v != int(v) and len(repr(v)) >= 7:
                    text.add(repr(v).encode())
                    binary.add(struct.pack("<d", v))
    return sorted(text)[:16] + sorted(binary)[:16]


def _scan(roots: list[Path], needles: list[bytes], budget: int | None,
          skip: set[Path], since: float = 0.0) -> tuple[list[str], int, bool]:  # fmt: skip
    """Files under ``roots`` holding any needle; files read; whether the budget ran out."""
    found, count, spent, uid = [], 0, 0, os.getuid()
    overlap = max((len(n) for n in needles), default=1) - 1
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            if Path(dirpath) in skip:
                dirs[:] = []
                continue
            for name in names:
                path = Path(dirpath, name)
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if (path in skip or not (st.st_mode & 0o100000) or st.st_uid != uid
                        or st.st_mtime < since):  # fmt: skip
                    continue
                if budget is not None and spent + st.st_size > budget:
                    return found, count, True
                spent += st.st_size
                count += 1
                if _holds(path, needles, overlap):
                    found.append(str(path))
    return found, count, False


def _holds(path: Path, needles: list[bytes], overlap: int) -> bool:
    try:
        with open(path, "rb") as f:
            tail = b""
            while chunk := f.read(CHUNK):
                block = tail + chunk
                if any(n in block for n in needles):
                    return True
                tail = block[-overlap:] if overlap else b""
    except OSError:
        return False
    return False


def _log_files(home: Path, scratch: Path) -> list[Path]:
    return [p for p in home.rglob("*.log") if p.is_file() and scratch not in p.parents]


@_skippable
def no_plaintext(probe: Probe) -> Check:
    needles = _needles(probe)
    if not needles:
        raise Skipped("the feature tables hold no values to look for")
    home = probe.app.home
    # Not opened here: closing any descriptor of a file drops every POSIX lock this
    # process holds on it (SQLite's on control.db and -shm, DuckDB's on its file); the
    # features file is read through a copy, and control.db is SQLCipher's whole.
    skip = {probe.scratch, home / FEATURES_FILE, home / CONTROL_FILE,
            home / (CONTROL_FILE + "-shm")}  # fmt: skip
    found, n_home, _ = _scan([home], needles, None, skip)
    if (home / FEATURES_FILE).exists() and _holds_features(probe, needles):
        found.append(str(home / FEATURES_FILE))
    day_ago = time.time() - 86400
    in_temp, n_temp, short = _scan(probe.temp_dirs, needles, TEMP_BUDGET, skip | {home},
                                   since=day_ago)  # fmt: skip
    found += in_temp
    where = (f"{len(needles)} values sampled from the feature tables looked for in {n_home} "
             f"files of the home (the stores, WALs, bundles, logs) and {n_temp} files of the "
             f"temp folder changed in the last day{' (budget reached)' if short else ''}")  # fmt: skip
    if found:
        return Check("", False, f"plaintext found in {', '.join(_clean(f, probe) for f in found[:5])}"
                                f"; {where}")  # fmt: skip
    return Check("", True, f"none found: {where}")


def _holds_features(probe: Probe, needles: list[bytes]) -> bool:
    """features.duckdb itself, read through a copy (its own descriptor is DuckDB's)."""
    try:
        copy = probe.features_copy()
    except Skipped:
        return False
    return _holds(copy, needles, max(len(n) for n in needles) - 1)


@_skippable
def wrong_key_refused(probe: Probe) -> Check:
    wrong = secrets.token_bytes(keys.KEY_BYTES)
    control = probe.control_copy()
    details = []
    ok = store_ops.control_refuses(control, keys.derive(wrong, CONTROL_FILE))
    try:  # through the store's own open: a clear error naming the store
        ControlStore(control, keys.derive(wrong, CONTROL_FILE)).close()
        ok = False
        details.append("control.db opened with a wrong key")
    except StoreError as exc:
        probe.errors.append(exc.message)
        ok = ok and "wrong master key" in exc.message
    ok = ok and not store_ops.control_refuses(control, probe.control_key)
    features = probe.features_copy()
    f_ok = store_ops.features_refuses(features, keys.derive(wrong, FEATURES_FILE))
    try:
        FeatureStore(features, keys.derive(wrong, FEATURES_FILE),
                     temp_dir=probe.scratch).close()  # fmt: skip
        f_ok = False
        details.append("features.duckdb opened with a wrong key")
    except StoreError as exc:
        probe.errors.append(exc.message)
    f_ok = f_ok and not store_ops.features_refuses(features, probe.features_key)
    if ok and f_ok:
        return Check("", True, "copies of control.db and features.duckdb refuse a random key "
                               "with a clear error, and open with the right one")  # fmt: skip
    return Check("", False, "; ".join(details) or "a wrong key was not refused cleanly")


@_skippable
def cipher_settings(probe: Probe) -> Check:
    c = store_ops.control_cipher(probe.app.home / CONTROL_FILE, probe.control_key)
    problems = []
    if not str(c["cipher_version"]).startswith("4."):
        problems.append(f"SQLCipher {c['cipher_version']} (4.x expected)")
    if int(c["kdf_iter"] or 0) < 256000:
        problems.append(f"kdf_iter {c['kdf_iter']} (< 256000)")
    if int(c["cipher_page_size"] or 0) != 4096:
        problems.append(f"cipher_page_size {c['cipher_page_size']}")
    if c["hmac_algorithm"] not in ("HMAC_SHA512", "HMAC_SHA256"):
        problems.append(f"HMAC {c['hmac_algorithm']}")
    if c["integrity"]:
        problems.append(f"control.db pages fail: {c['integrity'][:2]}")
    f = store_ops.features_encryption(probe.features_copy(), probe.features_key)
    if not f["encrypted"]:
        problems.append("features.duckdb is not encrypted")
    elif "GCM" not in str(f.get("cipher")):
        problems.append(f"features.duckdb cipher {f.get('cipher')} (AES-GCM expected)")
    detail = (f"control.db: SQLCipher {c['cipher_version']}, {c['kdf_algorithm']} "
              f"{c['kdf_iter']} iterations, {c['hmac_algorithm']}, page {c['cipher_page_size']}; "
              f"features.duckdb: encrypted {f.get('cipher')}")  # fmt: skip
    return Check("", not problems, "; ".join(problems) + (" -- " if problems else "") + detail)


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x55]))


@_skippable
def page_damage_detected(probe: Probe) -> Check:
    found = []
    control = probe.control_copy()
    pages = control.stat().st_size // 4096
    if pages < 3:
        raise Skipped("control.db has fewer than 3 pages")
    _flip(control, 4096 * (pages // 2) + 100)
    try:
        store = ControlStore(control, probe.control_key)
        try:
            problems = store.integrity_problems()
        finally:
            store.close()
    except StoreError as exc:
        problems = [exc.message]
    found.append(f"control.db page {pages // 2 + 1}: {problems[0] if problems else 'NOT detected'}")
    features = probe.features_copy()
    size = features.stat().st_size
    offset = 3 * 4096 + (size - 3 * 4096) // 2  # in the middle of the blocks
    _flip(features, offset)
    try:
        store = FeatureStore(features, probe.features_key, temp_dir=probe.scratch)
        try:
            f_problems = store.integrity_problems()
        finally:
            store.close()
    except StoreError as exc:
        f_problems = [exc.message]
    found.append(f"features.duckdb byte {offset}: "
                 f"{f_problems[0] if f_problems else 'NOT detected'}")  # fmt: skip
    return Check(
        "", bool(problems) and bool(f_problems), "; ".join(_clean(t, probe) for t in found)
    )


@_skippable
def audit_tail_cut_and_rollback(probe: Probe) -> Check:
    from appliance.audit import AuditService

    if not hasattr(AuditService, "checkpoint"):
        raise Skipped("not available: the audit service has no signed checkpoints")
    home = probe.app.home
    scratch_home = probe.scratch / "home"
    scratch_home.mkdir()
    if (home / "audit").is_dir():
        shutil.copytree(home / "audit", scratch_home / "audit")
    yesterday = probe.control_copy()  # the copy an attacker would put back
    current = scratch_home / CONTROL_FILE
    shutil.copyfile(yesterday, current)

    def service(path: Path) -> tuple[ControlStore, Any]:
        store = ControlStore(path, probe.control_key)
        return store, AuditService(store, scratch_home, lambda: probe.master)

    store, audit = service(current)
    try:
        v = audit.verify(SYSTEM, full=True)
        if not v.ok:
            return Check("", False, f"the chain does not verify before any change: {v.reason}")
        with store.transaction() as tx:  # newer events, then a checkpoint that signs them
            for i in range(2):
                tx.append_audit(SYSTEM, "selftest.probe", f"event {i}", {})
        audit.checkpoint(SYSTEM)
    finally:
        store.close()
    results = []
    cut = scratch_home / "cut.db"
    shutil.copyfile(current, cut)
    store_ops.drop_last_events(cut, probe.control_key, 1, reset_head=False)
    for label, path in (
        ("tail cut by one event", cut),
        ("rolled back to an older copy", yesterday),
    ):
        store, audit = service(path)
        try:
            v = audit.verify(SYSTEM, full=False)
        finally:
            store.close()
        results.append((label, not v.ok, v.reason))
    ok = all(detected for _, detected, _ in results)
    detail = "; ".join(f"{label}: {'detected' if d else 'NOT detected'}"
                       f"{' (' + r + ')' if d and r else ''}" for label, d, r in results)  # fmt: skip
    return Check("", ok, _clean(detail, probe))


@_skippable
def bundles_refused(probe: Probe) -> Check:
    reg = probe.app.registry
    versions = probe.app.control.model_versions()
    if not versions:
        raise Skipped("no model bundle registered yet")
    v = versions[-1]
    source = probe.app.home / v["path"]
    label = f"bundle {v['name']}@{v['version']}"

    def attempt(mutate: Callable[[Path], None] | None) -> str | None:
        copy = probe.scratch / f"bundle-{secrets.token_hex(4)}"
        shutil.copytree(source, copy)
        if mutate is not None:
            mutate(copy)
        try:
            bundles.verify(copy, reg.public_key, v["manifest_sha256"], label=label,
                           cipher=reg.cipher)  # fmt: skip
            return None
        except BundleTampered as exc:
            return exc.message

    def modified(p: Path) -> None:
        target = sorted(
            f for f in p.iterdir() if f.name not in (bundles.MANIFEST, bundles.SIGNATURE)
        )[0]
        _flip(target, target.stat().st_size // 2)

    def extra(p: Path) -> None:
        (p / "extra.py").write_text("import os\n")

    def foreign(p: Path) -> None:
        other = Ed25519PrivateKey.generate()
        (p / bundles.SIGNATURE).write_text(
            other.sign((p / bundles.MANIFEST).read_bytes()).hex() + "\n"
        )

    clean = attempt(None)
    if clean is not None:
        return Check("", False, f"the unmodified copy of {label} does not verify: {clean}")
    results = {what: attempt(fn) for what, fn in
               (("modified", modified), ("extra file", extra), ("foreign-signed", foreign))}  # fmt: skip
    ok = all(r is not None for r in results.values())
    return Check(
        "",
        ok,
        f"copies of {label}: "
        + "; ".join(
            f"{what}: {'refused (' + r + ')' if r else 'ACCEPTED'}" for what, r in results.items()
        ),
    )


@_skippable
def no_default_login(probe: Probe) -> Check:
    try:
        from appliance.auth.service import AuthService
    except ImportError:
        raise Skipped("not available: no user accounts in this build") from None
    from appliance.auth import Unauthenticated
    from appliance.auth import service as auth_service

    # Failed sign-ins are audited and rate-limited per user from the audit chain: each
    # batch of tries goes to a fresh copy of control.db, never the live store, and stays
    # under the limit, so every pair really reaches the password check.
    per_copy = max(1, getattr(auth_service, "LOGIN_ATTEMPTS", 5) - 1)
    store = ControlStore(probe.control_copy(), probe.control_key)
    try:
        users = [u["name"] for u in AuthService(store, probe.app.settings).users(SYSTEM)]
    finally:
        store.close()
    tries: dict[str, list[str]] = {}
    for name, password in DEFAULT_PAIRS:
        tries.setdefault(name, []).append(password)
    for name in users[:MAX_USERS]:
        tries.setdefault(name, []).extend([*DEFAULT_PASSWORDS, name])
    accepted, tried = [], 0
    for name, passwords in tries.items():
        passwords = list(dict.fromkeys(passwords))
        for i in range(0, len(passwords), per_copy):
            store = ControlStore(probe.control_copy(), probe.control_key)
            try:
                for password in passwords[i : i + per_copy]:
                    tried += 1
                    try:
                        AuthService(store, probe.app.settings).login(name, password)
                        accepted.append(name)
                    except Unauthenticated:
                        pass
            finally:
                store.close()
    if accepted:
        return Check("", False, f"a default password signs in: user(s) {', '.join(accepted)}")
    return Check("", True, f"{tried} default name/password pairs refused "
                           f"({len(users)} users on the box)")  # fmt: skip


@_skippable
def role_matrix(probe: Probe) -> Check:
    from appliance.auth import ROLES, Forbidden

    missing = [r for r in ROLES_OF_THE_ISSUE if r not in ROLES]
    wrong = []
    for role, allowed in ROLES.items():
        for permission in PERMISSIONS:
            actor = Actor("user", "selftest", role)
            try:
                require(actor, permission)
                granted = True
            except Forbidden:
                granted = False
            if granted != (permission in allowed):
                wrong.append(f"{role}/{permission}")
    ok = (
        not missing
        and not wrong
        and "viewer" in ROLES
        and not any(
            p.endswith((".manage", ".rotate", ".restore", ".erase"))
            for p in ROLES.get("viewer", ())
        )
    )
    detail = (f"{len(ROLES)} roles x {len(PERMISSIONS)} permissions enforced as declared"
              if ok else f"missing roles {missing}; enforced otherwise than declared: {wrong[:5]}")  # fmt: skip
    return Check("", ok, detail)


@_skippable
def tls_versions(probe: Probe) -> Check:
    settings = probe.app.settings
    host = settings["host"]
    if settings["tls"] == "off" or (settings["tls"] == "auto" and tls.is_loopback(host)):
        raise Skipped(f"TLS is not configured (plain HTTP on loopback {host})")
    plan = tls.plan(settings)
    context = tls.server_context(plan.cert, plan.key)
    results = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve(n: int) -> None:
            for _ in range(n):
                conn, _ = listener.accept()
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    conn.close()

        versions = [("TLSv1", False), ("TLSv1_1", False), ("TLSv1_2", True), ("TLSv1_3", True)]
        thread = threading.Thread(target=serve, args=(len(versions),), daemon=True)
        thread.start()
        for name, wanted in versions:
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
            client.set_ciphers("ALL:@SECLEVEL=0")
            with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names
                warnings.simplefilter("ignore", DeprecationWarning)
                version = getattr(ssl.TLSVersion, name)
                client.minimum_version = client.maximum_version = version
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                        client.wrap_socket(raw):  # fmt: skip
                    results[name] = True
            except (ssl.SSLError, OSError):
                results[name] = False
            results[name] = results[name] == wanted
        thread.join(5)
    ok = all(results.values())
    return Check("", ok, "the configured certificate's server context: TLS 1.0 and 1.1 "
                         "refused, 1.2 and 1.3 accepted" if ok else f"unexpected: {results}")  # fmt: skip


@_skippable
def key_hygiene(probe: Probe) -> Check:
    needles = probe.secrets()
    places: dict[str, bytes] = {}
    for name in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            places[f"/proc/self/{name}"] = Path(f"/proc/self/{name}").read_bytes()
    for log in _log_files(probe.app.home, probe.scratch):
        places[_clean(str(log), probe)] = log.read_bytes()
    for i, message in enumerate(probe.errors):
        places[f"wrong-key error {i + 1}"] = message.encode()
    leaks = [where for where, data in places.items() if any(n in data for n in needles)]
    if leaks:
        return Check("", False, f"key material found in {', '.join(leaks)}")
    return Check("", True, f"no key material (the master key and its derived keys, raw and "
                           f"hex) in {len(places)} places: "
                           f"{', '.join(sorted(places)) or 'none'}")  # fmt: skip


CHECKS: list[tuple[str, Callable[[Probe], Check]]] = [
    ("no_plaintext", no_plaintext),
    ("wrong_key_refused", wrong_key_refused),
    ("cipher_settings", cipher_settings),
    ("page_damage_detected", page_damage_detected),
    ("audit_tail_cut_and_rollback", audit_tail_cut_and_rollback),
    ("bundles_refused", bundles_refused),
    ("no_default_login", no_default_login),
    ("role_matrix", role_matrix),
    ("tls_versions", tls_versions),
    ("key_hygiene", key_hygiene),  # last: it reads the error messages the others collected
]
