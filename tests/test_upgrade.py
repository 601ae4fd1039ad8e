"""Upgrades: the home falaj 0.1.0 made (tests/fixtures/home-0.1.0) opens with this tree,
is backed up first, migrates forward and still answers as it did; a migration that
fails leaves it as it was."""

import json
import tarfile
from pathlib import Path

import pytest

from appliance import keys
from appliance.core import Appliance
from appliance.ops import backup as backups
from appliance.ops.upgrade import UpgradeFailed
from appliance.stores import control as control_store
from appliance.stores import features as features_store
from appliance.stores import snapshots
from appliance.stores.features import FeatureStore
from appliance.stores.migrations import Migration
from tests.conftest import ACTOR, Falaj

FIXTURE = Path(__file__).parent / "fixtures" / "home-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def old_home(tmp_path) -> Path:
    with tarfile.open(FIXTURE / "home.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "home"


def raw_state(home: Path) -> dict:
    """Both stores' migrations, row counts and audit head, read without migrating."""
    master = keys.read_key(home / "keys" / "master.key")
    control = snapshots.read_control_facts(home / "control.db", keys.derive(master, "control.db"))
    store = FeatureStore(home / "features.duckdb", keys.derive(master, "features.duckdb"))
    try:
        features = snapshots.read_features_facts(store)
    finally:
        store.close()
    return {"control": control, "features": features}


def test_the_previous_release_home_migrates_after_a_backup(old_home, tmp_path):
    before = raw_state(old_home)
    assert "0011_auth" not in before["control"]["migrations"]  # it is an old home
    f = Falaj(old_home)
    f.ok("check")
    taken = list((old_home / "backups").glob("pre-upgrade-*" + backups.SUFFIX))
    assert len(taken) == 1
    after = raw_state(old_home)
    assert after["control"]["migrations"] == sorted(m.name for m in control_store.MIGRATIONS)
    assert after["features"]["migrations"] == sorted(m.name for m in features_store.MIGRATIONS)
    assert after["features"]["rows"]["loans"] == before["features"]["rows"]["loans"] == 300
    assert after["features"]["rows"]["_predictions"] == before["features"]["rows"]["_predictions"]
    assert after["control"]["models"] == before["control"]["models"] == {"credit": [1]}
    # the backup holds the home as it was before any migration
    master = keys.read_key(old_home / "keys" / "master.key")
    m = backups.verify(taken[0], master)
    assert m["migrations"]["control.db"] == before["control"]["migrations"]
    assert m["migrations"]["features.duckdb"] == before["features"]["migrations"]
    assert m["audit_head"] == before["control"]["audit_head"]
    assert m["label"].startswith("pre-upgrade-")

    assert json.loads(f.ok("audit", "verify", "--full", "--json").stdout)["ok"]
    records = tmp_path / "records.json"
    records.write_text(json.dumps({"records": EXPECTED["records"]}))
    got = json.loads(f.ok("predict", "credit", "--input", records).stdout)
    assert got["version"] == EXPECTED["version"]
    assert got["predictions"] == pytest.approx(EXPECTED["predictions"], abs=1e-9)
    assert "credit@1" in f.ok("decisions", "get", EXPECTED["request_id"]).stdout
    # opened again: nothing pending, no second backup
    f.ok("check")
    assert len(list((old_home / "backups").iterdir())) == 1


BROKEN = Migration(
    "9999_broken", "CREATE TABLE upgrade_probe (a INTEGER);\nSELECT * FROM no_such_table"
)


@pytest.mark.parametrize("store", ["control.db", "features.duckdb"])
def test_a_failed_migration_leaves_the_home_as_it_was(old_home, monkeypatch, store):
    """control.db migrates first, then features.duckdb: a failure in either (after
    others of the same store and the other store committed) puts both stores back."""
    before = raw_state(old_home)
    module = control_store if store == "control.db" else features_store
    monkeypatch.setattr(module, "MIGRATIONS", [*module.MIGRATIONS, BROKEN])
    app = Appliance.open({"home": str(old_home)})
    try:
        with pytest.raises(UpgradeFailed, match=f"{store}: upgrading .* failed .*as it was"):
            app.init(ACTOR)
    finally:
        app.close()
    after = raw_state(old_home)
    assert after == before
    assert "upgrade_probe" not in after["control"]["rows"]
    assert "upgrade_probe" not in after["features"]["rows"]
    assert not list((old_home / "tmp").glob("upgrade-undo-*"))
    # without the broken migration it upgrades cleanly from there
    monkeypatch.undo()
    f = Falaj(old_home)
    f.ok("check")
    assert json.loads(f.ok("audit", "verify", "--full", "--json").stdout)["ok"]
    assert raw_state(old_home)["features"]["rows"]["loans"] == 300


def test_an_upgrade_refuses_while_an_old_server_holds_the_store(old_home):
    master = keys.read_key(old_home / "keys" / "master.key")
    holder = FeatureStore(old_home / "features.duckdb", keys.derive(master, "features.duckdb"))
    try:
        import subprocess
        import sys

        r = subprocess.run([sys.executable, "-m", "appliance", "--home", str(old_home), "deploy",
                            "credit", "--version", "1"], capture_output=True, text=True)  # fmt: skip
    finally:
        holder.close()
    assert r.returncode != 0
    assert "stop it before upgrading" in r.stderr
    assert not list((old_home / "backups").glob("*" + backups.SUFFIX))
    assert "0011_auth" not in raw_state(old_home)["control"]["migrations"]
