"""Backups and restores: the round trip while a server takes predictions, and every way
a backup file can be refused (damaged, cut short, foreign, a non-empty target)."""

import json
import shutil
import tarfile
import threading
import time
from pathlib import Path

import pytest

from appliance.core import Appliance
from appliance.ops import backup as backups
from tests.conftest import ACTOR, Falaj, admin_client

FIXTURE = Path(__file__).parent / "fixtures" / "home-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def base_home(tmp_path_factory) -> Path:
    """The 0.1.0 fixture home, opened once with this tree (migrated), then closed."""
    root = tmp_path_factory.mktemp("base")
    with tarfile.open(FIXTURE / "home.tar.gz") as tar:
        tar.extractall(root, filter="data")
    home = root / "home"
    Falaj(home).ok("check")
    shutil.rmtree(home / "backups")  # the upgrade's own backup: not these tests' business
    return home


@pytest.fixture
def source(base_home, tmp_path) -> Path:
    home = tmp_path / "source"
    shutil.copytree(base_home, home)
    return home


@pytest.fixture(scope="module")
def taken(base_home, tmp_path_factory) -> Path:
    """One backup of the base home (with no server), for the refusal tests."""
    out = tmp_path_factory.mktemp("taken") / "home.falaj-backup"
    copy = out.parent / "home"
    shutil.copytree(base_home, copy)
    Falaj(copy).ok("backup", "--out", out)
    shutil.copy(copy / "keys" / "master.key", out.parent / "master.key")
    return out


def facts(home: Path, key: Path | None = None) -> dict:
    """Row counts of the feature tables, model versions and whether check and audit
    verify pass, read through the CLI."""
    f = Falaj(home)
    f.ok("check")
    verified = f.ok("audit", "verify", "--full", "--json")
    status = json.loads(f.ok("status", "--json").stdout)
    return {
        "tables": {t["table"]: t["rows"] for t in status["tables"]},
        "models": sorted((m["name"], m["version"]) for m in status["models"]),
        "audit_ok": json.loads(verified.stdout)["ok"],
    }


def test_round_trip_while_the_server_takes_predictions(source, start_server, tmp_path):
    server = start_server(source)
    answered: list[tuple[float, str]] = []  # (time the answer came back, request id)
    stop = threading.Event()

    def predict():
        while not stop.is_set():
            code, body = server.request("POST", "/api/v1/models/credit/predict",
                                        {"records": EXPECTED["records"][:2]})  # fmt: skip
            assert code == 200, body
            answered.append((time.time(), body["request_id"]))

    thread = threading.Thread(target=predict)
    thread.start()
    try:
        while len(answered) < 5:
            time.sleep(0.05)
        started = time.time()
        out = tmp_path / "live.falaj-backup"
        # The CLI cannot open features.duckdb (the server holds it): the server takes it.
        r = Falaj(source).ok("backup", "--out", out, "--port", server.port, "--json")
        while len(answered) < len(before := [a for a in answered if a[0] < started]) + 5:
            time.sleep(0.05)  # predictions went on during and after the backup
    finally:
        stop.set()
        thread.join()
    manifest = json.loads(r.stdout)["manifest"]
    assert "taken_by" in json.loads(r.stdout)  # asked the server
    server.stop()

    target = tmp_path / "restored"
    restored = Falaj(target)
    result = restored("restore", out, "--home", target, "--key", source / "keys" / "master.key")
    assert result.exit_code == 0, result.output + result.stderr
    assert "check and audit verify passed" in result.stdout
    assert not (target / "keys" / "master.key").samefile(source / "keys" / "master.key")
    assert (target / "keys" / "master.key").read_text() == (
        source / "keys" / "master.key"
    ).read_text()

    got = facts(target)
    want = facts(source)
    assert got["audit_ok"] and want["audit_ok"]
    assert got["tables"] == want["tables"] == {"loans": 300}
    assert got["models"] == want["models"] == [("credit", 1)]
    assert manifest["models"] == {"credit": [1]}
    assert manifest["rows"]["features.duckdb"]["loans"] == 300
    # every prediction answered before the backup started is in the restored log
    assert len(before) >= 5
    for _, request_id in before:
        restored.ok("decisions", "get", request_id)
    # and so is the one the 0.1.0 home logged
    restored.ok("decisions", "get", EXPECTED["request_id"])
    # the restored chain holds the backup's head, then the restore's own event
    tail = json.loads(restored.ok("audit", "tail", "-n", "50", "--json").stdout)
    head = manifest["audit_head"]
    by_seq = {e["seq"]: e for e in tail}
    assert by_seq[head["seq"]]["hash"] == head["hash"]
    assert tail[-1]["action"] == "home.restore"
    # every batch the copied chain names up to its head is in the restored log
    app = Appliance.open({"home": str(target)})
    try:
        logged = {e["subject"] for e in app.control.audit_events(0, head["seq"])
                  if e["action"] == "decisions.logged"}  # fmt: skip
        batches = {b["batch_id"] for b in app.features.decision_batches()}
    finally:
        app.close()
    assert len(logged) >= EXPECTED["decisions"] + 1  # the 0.1.0 home's, then live ones
    assert logged <= batches


def test_a_backup_reveals_nothing(taken):
    data = taken.read_bytes()
    assert data.startswith(backups.MAGIC)
    for plain in (b"MANIFEST", b"credit", b"loans", b"customer_id", b"SQLite", b"DUCK",
                  b"artifacts/", b"audit_head"):  # fmt: skip
        assert plain not in data


def test_the_manifest_is_signed_and_names_every_member(taken):
    key = bytes.fromhex((taken.parent / "master.key").read_text().strip())
    m = backups.verify(taken, key)
    assert set(m["members"]) >= {"control.db", "features.duckdb"}
    assert any(name.startswith("artifacts/credit/v1/") for name in m["members"])
    assert "keys/master.key" not in m["members"] and "not included" in m["master_key"]
    assert m["models"] == {"credit": [1]} and m["audit_head"]["seq"] > 0
    assert m["rows"]["features.duckdb"]["loans"] == 300
    assert m["key"] == backups.fingerprint(key)


def flipped(src: Path, dest: Path, offset: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("where", ["header", "first chunk", "middle", "last byte"])
def test_a_flipped_byte_is_refused(taken, tmp_path, where):
    size = taken.stat().st_size
    offset = {"header": len(backups.MAGIC) + 10, "first chunk": 400,
              "middle": size // 2, "last byte": size - 1}[where]  # fmt: skip
    bad = flipped(taken, tmp_path / "bad.falaj-backup", offset)
    target = tmp_path / "restored"
    r = Falaj(target)("restore", bad, "--home", target, "--key", taken.parent / "master.key")
    assert r.exit_code == 1, r.output + r.stderr
    assert "damaged" in r.stderr or "another master key" in r.stderr
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.falaj-backup"]  # no staging left


def test_a_cut_short_backup_is_refused(taken, tmp_path):
    cut = tmp_path / "cut.falaj-backup"
    cut.write_bytes(taken.read_bytes()[: taken.stat().st_size - 100])
    r = Falaj(tmp_path / "x")("restore", cut, "--home", tmp_path / "x",
                              "--key", taken.parent / "master.key")  # fmt: skip
    assert r.exit_code == 1
    assert "cut short" in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_foreign_backup_is_refused(taken, tmp_path):
    other = tmp_path / "other.key"
    other.write_text("ab" * 32)
    r = Falaj(tmp_path / "x")("restore", taken, "--home", tmp_path / "x", "--key", other)
    assert r.exit_code == 1
    assert "made with another master key" in r.stderr
    assert "ab" * 32 not in r.stderr and str(taken.parent) not in r.stderr


def test_a_manifest_signed_by_another_key_is_refused(taken, tmp_path, monkeypatch):
    """Sealed with this key but signed with another (a forged manifest): refused."""
    key = bytes.fromhex((taken.parent / "master.key").read_text().strip())
    home = tmp_path / "home"
    shutil.copytree(taken.parent / "home", home)
    app = Appliance.open({"home": str(home)})
    try:
        real = backups.signing_key
        monkeypatch.setattr(backups, "signing_key", lambda master: real(b"\x07" * 32))
        forged = backups.take(app, ACTOR, out=tmp_path / "forged.falaj-backup")
        monkeypatch.setattr(backups, "signing_key", real)
    finally:
        app.close()
    with pytest.raises(backups.BackupRefused, match="signature does not verify"):
        backups.verify(Path(forged["path"]), key)


def test_restore_refuses_a_non_empty_folder_and_a_missing_key(taken, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "something").write_text("keep me")
    r = Falaj(target)("restore", taken, "--home", target, "--key", taken.parent / "master.key")
    assert r.exit_code == 2 and "not empty" in r.stderr
    assert [p.name for p in target.iterdir()] == ["something"]
    r = Falaj(tmp_path / "new")("restore", taken, "--home", tmp_path / "new")
    assert r.exit_code == 2 and "--key" in r.stderr


def test_the_api_takes_lists_and_downloads_backups(source):
    app = Appliance.open({"home": str(source)})
    try:
        client = admin_client(app)
        r = client.post("/api/v1/backups")
        assert r.status_code == 201, r.get_json()
        name = r.get_json()["name"]
        assert "path" not in r.get_json()
        listed = client.get("/api/v1/backups").get_json()["backups"]
        assert [b["name"] for b in listed] == [name]
        assert listed[0]["signature"] == "verified"
        assert listed[0]["models"] == {"credit": [1]}
        got = client.get(f"/api/v1/backups/{name}")
        assert got.status_code == 200
        assert got.data == (source / "backups" / name).read_bytes()
        assert client.get("/api/v1/backups/..%2Fcontrol.db").status_code in (400, 404)
        assert client.get("/api/v1/backups/nope.falaj-backup").status_code == 404
        events = app.control.audit_find("backup.create", name)
        assert len(events) == 1 and events[0]["details"]["bytes"] == len(got.data)
    finally:
        app.close()


def test_the_audit_checkpoints_travel_with_the_backup(source, tmp_path):
    """A checkpoint signed before the backup is in it, and the restored chain verifies
    against it; none written meanwhile can be indexed but not copied."""
    f = Falaj(source)
    f.ok("audit", "checkpoint")
    out = tmp_path / "with-checkpoint.falaj-backup"
    f.ok("backup", "--out", out)
    f.ok("audit", "checkpoint")  # after the backup: not in it
    target = tmp_path / "restored"
    Falaj(target).ok("restore", out, "--home", target, "--key", source / "keys" / "master.key")
    copied = (target / "audit" / "checkpoints.log").read_text().splitlines()
    assert len(copied) == 1
    assert copied[0] == (source / "audit" / "checkpoints.log").read_text().splitlines()[0]
    verified = json.loads(Falaj(target).ok("audit", "verify", "--full", "--json").stdout)
    assert verified["ok"] and verified["checkpoint"]
