"""`falaj rekey`: afterwards the old key opens neither store, row counts are equal, the
bundles verify under the new key, a keys.rotated event names both keys' fingerprints;
it works with FALAJ_MASTER_KEY_FILE, refuses a systemd credential, and a SIGKILL at any
of its fault points leaves a home that opens with the old or the new key."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import faults, keys, rekey
from appliance.core import Appliance
from appliance.stores import ControlStore
from appliance.stores import rekey as store_rekey
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE
from tests.conftest import ACTOR, FEATURES, Falaj

EXERCISED: set[str] = set()


@pytest.fixture(scope="module")
def template(tmp_path_factory, request):
    """A home with the credit data, credit@1 and @2 registered and @1 deployed."""
    from appliance import demo

    home = tmp_path_factory.mktemp("rekey") / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        app.ingestion.ingest(demo.credit_risk(1500, seed=5), "loans", "customer_id",
                             "event_time", ACTOR)  # fmt: skip
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES[:4]))
        app.serving.deploy("credit", 1, ACTOR)
    finally:
        app.close()
    return home


@pytest.fixture
def home(template, tmp_path):
    target = tmp_path / "home"
    shutil.copytree(template, target)
    return target


def facts(home: Path, key_file: str = "") -> dict:
    """What must survive a rotation: row counts, bundles that verify, a sound chain."""
    app = Appliance.open({"home": str(home), "master_key_file": key_file})
    try:
        tables = {t["table"]: t["rows"] for t in app.catalog.tables(ACTOR)}
        for v in app.registry.versions(ACTOR):
            app.registry.verify(v["name"], v["version"], ACTOR)  # raises when it does not
        assert app.audit.verify(ACTOR, full=True).ok
        rotated = app.control.audit_find("keys.rotated", "master key")
        return {"tables": tables, "decisions": app.features.decision_count(),
                "versions": len(app.registry.versions(ACTOR)), "rotated": len(rotated),
                "key": app.master_key}  # fmt: skip
    finally:
        app.close()


def refused_by(home: Path, master: bytes) -> bool:
    """Both stores refuse this master key."""
    return store_rekey.control_refuses(
        home / CONTROL_FILE, keys.derive(master, CONTROL_FILE)
    ) and store_rekey.features_refuses(home / FEATURES_FILE, keys.derive(master, FEATURES_FILE))


def test_rekey_rotates_every_key_and_keeps_every_row(home):
    falaj = Falaj(home)
    before = facts(home)
    old = before["key"]
    r = falaj.ok("rekey", "--json")
    out = json.loads(r.stdout)
    after = facts(home)
    new = after["key"]
    assert new != old and len(new) == 32
    assert after["tables"] == before["tables"] and after["tables"]["loans"] == 1500
    assert after["versions"] == before["versions"] == 2
    assert after["rotated"] == 1
    # the old key opens neither store; the new one opens both
    assert refused_by(home, old) and not refused_by(home, new)
    # the event names both keys by fingerprint, never by value
    app = Appliance.open({"home": str(home)})
    try:
        event = app.control.audit_find("keys.rotated", "master key")[0]
    finally:
        app.close()
    assert event["details"]["old_key"] == keys.fingerprint(old) == out["old_key"]
    assert event["details"]["new_key"] == keys.fingerprint(new) == out["new_key"]
    assert event["details"]["rows"]["features.duckdb"] >= 1500
    for text in (json.dumps(event), r.stdout, r.stderr):
        assert old.hex() not in text and new.hex() not in text
    assert stat.S_IMODE((home / "keys" / "master.key").stat().st_mode) == 0o600
    assert not (home / rekey.STAGE).exists() and not (home / rekey.LOCK).exists()
    # the bundles were re-signed: the old signing key no longer verifies them
    from appliance.errors import BundleTampered
    from appliance.registry import bundles

    with pytest.raises(BundleTampered, match="signature does not verify"):
        bundles.verify(home / "artifacts" / "credit" / "v1", keys.signing_key(old).public_key())
    # and a second rotation works on top of the first
    falaj.ok("rekey")
    assert refused_by(home, new) and facts(home)["rotated"] == 2


def test_the_deployed_model_still_serves_after_rekey(home):
    Falaj(home).ok("rekey")
    app = Appliance.open({"home": str(home)})
    try:
        app.serving.server.refresh(force=True)
        record = dict.fromkeys(FEATURES, 1.0)
        got = app.serving.predict("credit", [record], ACTOR)
        assert 0.0 <= got["predictions"][0] <= 1.0
    finally:
        app.close()


def test_rekey_with_a_key_file_rewrites_that_file(home, tmp_path):
    key_file = tmp_path / "ext" / "falaj.key"
    key_file.parent.mkdir()
    shutil.move(home / "keys" / "master.key", key_file)
    old = key_file.read_text()
    env = {"FALAJ_MASTER_KEY_FILE": str(key_file)}
    r = Falaj(home).ok("rekey", env=env)
    assert "FALAJ_MASTER_KEY_FILE" in r.stdout
    assert key_file.read_text() != old and len(bytes.fromhex(key_file.read_text())) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert sorted(os.listdir(key_file.parent)) == ["falaj.key"]  # no .new or .tmp left
    assert not (home / "keys" / "master.key").exists()
    assert refused_by(home, bytes.fromhex(old)) and facts(home, str(key_file))["rotated"] == 1


def test_rekey_refuses_a_systemd_credential(home, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    shutil.move(home / "keys" / "master.key", creds / keys.CREDENTIAL_NAME)
    before = (home / CONTROL_FILE).read_bytes()
    r = Falaj(home)("rekey", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert r.exit_code == 2
    assert "systemd-creds encrypt --name=falaj-master-key" in r.stderr
    assert (home / CONTROL_FILE).read_bytes() == before


def test_rekey_refuses_while_the_store_is_in_use(home):
    other = ControlStore(home / CONTROL_FILE, keys.derive(facts(home)["key"], CONTROL_FILE))
    try:
        other.query("SELECT count(*) FROM audit_events")
        r = Falaj(home)("rekey")
    finally:
        other.close()
    assert r.exit_code == 2 and "in use by another process" in r.stderr
    assert not (home / rekey.STAGE).exists() and facts(home)["rotated"] == 0


def test_a_bundle_that_does_not_verify_stops_the_rotation(home):
    old = facts(home)["key"]
    target = next((home / "artifacts" / "credit" / "v2").glob("*.json"))
    target.write_bytes(target.read_bytes() + b" ")
    r = Falaj(home)("rekey")
    assert r.exit_code == 1 and "bundle credit@2" in r.stderr and "nothing changed" in r.stderr
    assert not (home / rekey.STAGE).exists()
    assert not refused_by(home, old)
    assert keys.read_key(home / "keys" / "master.key") == old


# -- crashes ---------------------------------------------------------------------------


def kill_at(home: Path, point: str) -> None:
    EXERCISED.add(point.split(":")[0])
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home), "rekey"],
        env=os.environ | {"FALAJ_FAULT": point}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize(
    "point, rotated",
    [("rekey.staged", False), ("rekey.committed", True), ("rekey.swapping:1", True),
     ("rekey.swapped", True)],
)  # fmt: skip
def test_killed_during_rekey_the_home_opens_with_the_old_or_the_new_key(home, point, rotated):
    before = facts(home)
    old = before["key"]
    kill_at(home, point)
    assert (home / rekey.STAGE).exists()  # it was killed midway
    after = facts(home)  # opening recovers: finishes or undoes the rotation
    assert not (home / rekey.STAGE).exists()
    assert after["tables"] == before["tables"] and after["versions"] == before["versions"]
    if rotated:
        assert after["key"] != old and after["rotated"] == 1
        assert refused_by(home, old) and not refused_by(home, after["key"])
    else:
        assert after["key"] == old and after["rotated"] == 0
        assert not refused_by(home, old)
    assert not list(home.glob("*.new")) and not list((home / "keys").glob("*.new"))


def test_every_rekey_fault_point_is_exercised():
    assert EXERCISED == set(faults.REKEY_POINTS)
