"""falaj init: keys, encrypted stores, migrations, and clear errors for bad keys."""

import os
import stat

import sqlcipher3

from appliance import keys
from appliance.core import Appliance
from tests.conftest import ACTOR


def audit_count(home) -> int:
    app = Appliance.open({"home": str(home)})
    try:
        return app.audit.verify(ACTOR).checked
    finally:
        app.close()


def test_init_creates_home_with_private_key_and_is_idempotent(falaj, home):
    r = falaj.ok("init")
    assert "initialised" in r.output
    key = home / "keys" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    assert (home / "control.db").exists() and (home / "features.duckdb").exists()
    before = {p: p.read_bytes() for p in (key,)}
    events = audit_count(home)
    assert events == 1

    r = falaj.ok("init")
    assert "nothing changed" in r.output
    assert key.read_bytes() == before[key]
    assert audit_count(home) == events  # a second init writes no event


def test_migrations_are_recorded(app):
    names = [r["name"] for r in app.control.query("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["0001_audit", "0002_registry", "0003_audit_head", "0004_table_specs",
                     "0005_feature_views", "0006_training_sets", "0007_runs_aliases",
                     "0008_releases", "0009_scheduler", "0010_alerts", "0011_auth",
                     "0012_audit_proofs", "0013_compliance"]  # fmt: skip
    names = [r["name"] for r in app.features.query("SELECT name FROM _migrations ORDER BY name")]
    assert names == ["0001_catalog", "0002_decision_batches", "0003_quality", "0004_online",
                     "0005_decision_routes"]  # fmt: skip


def test_wrong_key_is_one_clear_line(falaj, home, tmp_path):
    falaj.ok("init")
    wrong = tmp_path / "wrong.key"
    wrong.write_text(os.urandom(32).hex())
    r = falaj("audit", "verify", env={"FALAJ_MASTER_KEY_FILE": str(wrong)})
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: control.db: cannot decrypt")
    assert "wrong master key" in r.stderr


def test_wrong_key_names_the_feature_store(falaj, home, tmp_path):
    falaj.ok("init")
    # a key that opens control.db but not features.duckdb: re-key control.db only
    master = keys.read_key(home / "keys" / "master.key")
    new = os.urandom(32)
    conn = sqlcipher3.connect(str(home / "control.db"))
    conn.execute(f"PRAGMA key = \"x'{keys.derive(master, 'control.db').hex()}'\"")
    conn.execute(f"PRAGMA rekey = \"x'{keys.derive(new, 'control.db').hex()}'\"")
    conn.close()
    key_file = tmp_path / "new.key"
    key_file.write_text(new.hex())
    r = falaj("status", env={"FALAJ_MASTER_KEY_FILE": str(key_file)})
    assert r.exit_code == 2
    assert (
        r.stderr.strip()
        == f"error: features.duckdb: cannot decrypt {home / 'features.duckdb'}: wrong master key"
    )


def test_missing_key_is_refused_not_regenerated(falaj, home):
    falaj.ok("init")
    (home / "keys" / "master.key").unlink()
    r = falaj("init")
    assert r.exit_code == 2
    assert "master key" in r.stderr and "missing" in r.stderr
    assert not (home / "keys" / "master.key").exists()
    r = falaj("status")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: control.db: cannot open: master key:")
    assert r.stderr.count("\n") == 1


def test_damaged_store_is_named(falaj, home):
    falaj.ok("init")
    data = bytearray((home / "control.db").read_bytes())
    data[100:200] = os.urandom(100)
    (home / "control.db").write_bytes(bytes(data))
    r = falaj("audit", "verify")
    assert r.exit_code == 2
    assert "control.db" in r.stderr and "damaged" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_damaged_feature_store_is_named(falaj, home):
    falaj.ok("init")
    (home / "features.duckdb").write_bytes(b"not a database at all" * 500)
    r = falaj("status")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: features.duckdb: cannot open")


def test_key_from_env_file_and_systemd_credential(tmp_path, falaj, home):
    key_file = tmp_path / "given.key"
    key_file.write_bytes(os.urandom(32))  # raw bytes are accepted too
    falaj.ok("init", env={"FALAJ_MASTER_KEY_FILE": str(key_file)})
    assert not (home / "keys" / "master.key").exists()
    assert falaj("status", env={"FALAJ_MASTER_KEY_FILE": str(key_file)}).exit_code == 0
    assert falaj("status").exit_code == 2  # without the key: refused

    cred = tmp_path / "creds"
    cred.mkdir()
    (cred / "falaj-master-key").write_bytes(key_file.read_bytes())
    r = falaj("audit", "verify", env={"CREDENTIALS_DIRECTORY": str(cred)})
    assert r.exit_code == 0, r.stderr
    assert "1 events" in r.output


def test_given_key_file_that_does_not_exist(falaj, tmp_path):
    r = falaj("init", env={"FALAJ_MASTER_KEY_FILE": str(tmp_path / "nope.key")})
    assert r.exit_code == 2
    assert "nope.key does not exist" in r.stderr


def test_init_records_an_audit_event(app):
    (event,) = app.audit.tail(5, ACTOR)
    assert event["action"] == "home.init"
    assert event["actor"] == str(ACTOR)
    assert event["details"]["created_key"] is True


def test_init_refuses_to_replace_one_lost_store(falaj, home):
    falaj.ok("init")
    (home / "features.duckdb").unlink()
    r = falaj("init")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: features.duckdb: missing from")
    assert not (home / "features.duckdb").exists()
    r = falaj("status")
    assert r.exit_code == 2 and "features.duckdb" in r.stderr and "does not exist" in r.stderr


def test_unusable_home_is_one_clear_line(tmp_path):
    from tests.conftest import Falaj

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = Falaj(blocker / "home")("init")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and str(blocker) in r.stderr
    assert "Traceback" not in r.output
