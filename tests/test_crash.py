"""Crash consistency: the real `falaj` process is killed with SIGKILL (at every named
fault point, at random moments of a large ingest, and under prediction load) and the
reopened home must tell one story: every change that spans features.duckdb and
control.db is there with its audit event, or neither is.

`assert_consistent` reads both stores through the appliance and checks each direction
(every event's change is present; every present change has its event), the row counts
against their batches, the bundle folders against the registry and the home for
leftover temporary files.
"""

import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from appliance import demo, faults
from appliance.core import Appliance
from appliance.serving.decision_log import records_sha256
from appliance.serving.slots import other
from appliance.stores import control as control_store
from appliance.stores import features as features_store
from appliance.stores import ident
from tests.conftest import ACTOR, FEATURES, RECORD, TRAIN, Falaj

KILLED = -signal.SIGKILL
BIG_ROWS = 300_000
# (first-admin-enrolment.txt: the first start's link, unused until an admin enrols)
HOME_ENTRIES = {"artifacts", "backups", "keys", "control.db", "features.duckdb", "tmp",
                "first-admin-enrolment.txt"}  # fmt: skip

# The fault points some test below kills the process at; one must cover each.
EXERCISED: set[str] = set()


def exercises(*points: str):
    EXERCISED.update(points)
    return lambda fn: fn


# -- the consistency check -------------------------------------------------------------


@dataclass
class Facts:
    """What a consistent home holds, for the tests' own assertions."""

    events: list[dict]
    rows: dict[str, int]  # feature table -> rows
    versions: dict[str, dict]  # "name@version" -> model_versions row
    deployments: dict[str, dict]  # name -> {live_slot, blue_version, green_version}
    decisions: int  # rows in the decision log

    def of(self, action: str) -> list[dict]:
        return [e for e in self.events if e["action"] == action]


def assert_consistent(home: Path) -> Facts:
    """Open the home through the appliance and check that the stores, the bundle
    folders and the audit chain agree; then that closing it leaves no temporary file."""
    app = Appliance.open({"home": str(home)})
    try:
        app.control, app.features  # noqa: B018  (opening is what reconciles)
        events = app.control.query(
            "SELECT seq, actor, action, subject, details FROM audit_events ORDER BY seq"
        )
        for e in events:
            e["details"] = json.loads(e["details"])
        assert app.audit.verify(ACTOR, full=True).ok
        _check_migrations(app, events)
        rows = _check_ingests(app, events)
        versions = _check_registry(app, home, events)
        deployments = _check_deployments(app, events, versions)
        decisions = _check_decisions(app, events)
    finally:
        app.close()
    leftovers = sorted(set(os.listdir(home)) - HOME_ENTRIES)
    assert not leftovers, f"left in the home after a clean close: {leftovers}"
    tmp = home / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), f"spill files left: {list(tmp.iterdir())}"
    hidden = sorted(p.relative_to(home).as_posix() for p in (home / "artifacts").rglob(".*"))
    assert not hidden, f"temporary bundle folders left: {hidden}"
    return Facts(events, rows, versions, deployments, decisions)


def _check_migrations(app: Appliance, events: list[dict]) -> None:
    """Every migration a store recorded is named by exactly one home.init or
    home.migrate event, and every store is up to date."""
    stores = (("control.db", app.control, control_store.MIGRATIONS),
              ("features.duckdb", app.features, features_store.MIGRATIONS))  # fmt: skip
    for filename, store, migrations in stores:
        audited: Counter[str] = Counter()
        for e in events:
            if e["action"] == "home.init":
                audited.update(e["details"]["migrations"].get(filename, []))
            elif e["action"] == "home.migrate" and e["subject"] == filename:
                audited.update(e["details"]["migrations"])
        assert store.migrations() == [m.name for m in migrations], filename
        assert audited == Counter(m.name for m in migrations), f"{filename}: {audited}"


def _check_ingests(app: Appliance, events: list[dict]) -> dict[str, int]:
    batches = {b["batch_id"]: b for b in app.features.ingest_batches()}
    # a batch lands by an ingest, or by releasing quarantined rows
    logged = {e["details"]["batch"]: e for e in events
              if e["action"] in ("data.ingest", "data.quarantine.release")}  # fmt: skip
    assert app.features.quarantine_ops() == [], "a quarantine release or drop left pending"
    assert sorted(batches) == sorted(logged), "ingest batches and data.ingest events differ"
    for batch_id, b in batches.items():
        e = logged[batch_id]
        assert (e["subject"], e["details"]["rows"]) == (b["table_name"], b["rows"]), batch_id
    undone = [e["details"]["batch"] for e in events
              if e["action"] == "reconcile.rollback" and e["details"]["change"] == "data.ingest"]  # fmt: skip
    assert len(set(undone)) == len(undone) and not set(undone) & set(batches)
    # `created` is true on a table's first event only: a table is dropped only when
    # a rollback removes its last batch, and no batch with an event is ever removed.
    seen: set[str] = set()
    for e in sorted(logged.values(), key=lambda e: e["seq"]):
        if e["action"] == "data.ingest":
            assert e["details"]["created"] == (e["subject"] not in seen), e
        seen.add(e["subject"])

    catalog = {r["table_name"] for r in app.features.query("SELECT table_name FROM _tables")}
    stored = {r["table_name"] for r in app.features.query(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
    ) if not r["table_name"].startswith("_")}  # fmt: skip
    assert stored == catalog == {b["table_name"] for b in batches.values()}
    rows = {}
    for table in sorted(catalog):
        per_batch = app.features.query(
            f"SELECT _batch_id AS batch, count(*) AS n FROM {ident(table)} GROUP BY 1"
        )
        assert {r["batch"]: r["n"] for r in per_batch} == {
            k: b["rows"] for k, b in batches.items() if b["table_name"] == table
        }, table
        rows[table] = sum(r["n"] for r in per_batch)
    return rows


def _check_registry(app: Appliance, home: Path, events: list[dict]) -> dict[str, dict]:
    """Versions against model.register events and bundle folders (read from disk, not
    through app.registry, whose first use reconciles the folders itself)."""
    versions = {f"{r['name']}@{r['version']}": r for r in app.control.query(
        "SELECT name, version, path, manifest_sha256 FROM model_versions"
    )}  # fmt: skip
    logged = {e["subject"]: e["details"] for e in events if e["action"] == "model.register"}
    assert sorted(versions) == sorted(logged), "model versions and model.register events differ"
    for ref, r in versions.items():
        assert r["path"] == f"artifacts/{r['name']}/v{r['version']}"
        manifest = hashlib.sha256((home / r["path"] / "MANIFEST").read_bytes()).hexdigest()
        assert manifest == r["manifest_sha256"] == logged[ref]["manifest_sha256"], ref
    models = {r["name"] for r in app.control.query("SELECT name FROM models")}
    assert models == {r["name"] for r in versions.values()}
    folders = sorted(p.relative_to(home).as_posix() for p in (home / "artifacts").glob("*/*"))
    assert folders == sorted(r["path"] for r in versions.values()), "bundle folders"
    return versions


def _check_deployments(
    app: Appliance, events: list[dict], versions: dict[str, dict]
) -> dict[str, dict]:
    """Replay every model.deploy and model.rollback event: the deployments table must
    be where the last one left it."""
    state: dict[str, dict] = {}
    for e in events:
        if e["action"] not in ("model.deploy", "model.rollback"):
            continue
        assert e["subject"] in versions, e
        name, _, v = e["subject"].rpartition("@")
        s = state.get(name)
        if e["action"] == "model.deploy":
            slot = "blue" if s is None else other(s["live_slot"])
            previous = None if s is None else s[f"{s['live_slot']}_version"]
            assert e["details"] == {"slot": slot, "previous_version": previous}, e
            s = s or {"blue_version": None, "green_version": None}
            state[name] = s | {"live_slot": slot, f"{slot}_version": int(v)}
        else:
            assert s is not None, e
            slot = other(s["live_slot"])
            assert s[f"{slot}_version"] == int(v), e
            assert e["details"] == {"slot": slot, "from_version": s[f"{s['live_slot']}_version"]}
            state[name] = s | {"live_slot": slot}
    rows = {r["name"]: {k: r[k] for k in ("live_slot", "blue_version", "green_version")}
            for r in app.control.deployments()}  # fmt: skip
    assert rows == state
    return rows


def _check_decisions(app: Appliance, events: list[dict]) -> int:
    batches = {r["batch_id"]: r for r in app.features.query("SELECT * FROM _decision_batches")}
    logged = {e["subject"]: e["details"] for e in events if e["action"] == "decisions.logged"}
    assert sorted(batches) == sorted(logged), "decision batches and decisions.logged differ"
    counts = app.features.query(
        "SELECT batch_id, count(*) AS n, count(DISTINCT request_id) AS requests "
        "FROM _predictions GROUP BY 1"
    )
    assert {r["batch_id"]: (r["n"], r["requests"]) for r in counts} == {
        k: (b["rows"], b["requests"]) for k, b in batches.items()
    }
    for batch_id, b in batches.items():
        d = logged[batch_id]
        assert (d["rows"], d["requests"], d["records_sha256"]) == (
            b["rows"], b["requests"], b["records_sha256"]
        )  # fmt: skip
        records = app.features.decision_batch_rows(batch_id)
        assert records_sha256(records) == b["records_sha256"], batch_id
    return sum(r["n"] for r in counts)


def reopen(home: Path) -> Facts:
    """What an operator does after a crash: `falaj check`, `falaj audit verify --full`;
    then the consistency check."""
    falaj = Falaj(home)
    falaj.ok("check")
    falaj.ok("audit", "verify", "--full")
    return assert_consistent(home)


# -- running and killing the real process ----------------------------------------------


def command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", "--home", str(home), *map(str, args)]


def crash(home: Path, fault: str, *args: str) -> None:
    """Run `falaj ARGS` with FALAJ_FAULT=fault; it must die by SIGKILL."""
    r = subprocess.run(command(home, *args), env=os.environ | {"FALAJ_FAULT": fault},
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == KILLED, (
        f"falaj {' '.join(args)} with FALAJ_FAULT={fault} exited {r.returncode}:\n"
        f"{r.stdout}{r.stderr}"
    )


def serve(start_server, home: Path, fault: str | None = None):
    with pytest.MonkeyPatch.context() as mp:
        if fault:
            mp.setenv("FALAJ_FAULT", fault)  # the server's environment only
        return start_server(home)


def kill(server) -> None:
    server.proc.kill()
    assert server.proc.wait(timeout=30) == KILLED


def copy_home(template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "home"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    paths = {"credit": d / "credit.csv", "extra": d / "extra.csv"}
    pacsv.write_csv(demo.credit_risk(3000, seed=3), paths["credit"])
    pacsv.write_csv(demo.credit_risk(500, seed=5), paths["extra"])
    return paths


@pytest.fixture(scope="module")
def template(tmp_path_factory, files) -> Path:
    """A home with table loans (3,000 rows), credit@1 and credit@2 registered and
    credit@1 live in the blue slot; each test works on its own copy."""
    home = tmp_path_factory.mktemp("template") / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        app.ingestion.ingest(files["credit"], "loans", "customer_id", "event_time", ACTOR)
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
        app.serving.deploy("credit", 1, ACTOR)
    finally:
        app.close()
    assert_consistent(home)
    return home


@pytest.fixture(scope="module")
def old_home(tmp_path_factory) -> Path:
    """A home made by an earlier release: control.db without its third migration,
    features.duckdb without its second."""
    home = tmp_path_factory.mktemp("old") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(control_store, "MIGRATIONS", control_store.MIGRATIONS[:2])
        mp.setattr(features_store, "MIGRATIONS", features_store.MIGRATIONS[:1])
        mp.setattr(Appliance, "_reconcile_features", lambda self: None)  # needs the new schema
        app = Appliance.open({"home": str(home)})
        try:
            app.init(ACTOR)
        finally:
            app.close()
    return home


def in_app(home: Path, fn):
    app = Appliance.open({"home": str(home)})
    try:
        return fn(app)
    finally:
        app.close()


# -- the check itself ------------------------------------------------------------------


def _control_write(home: Path, write) -> None:
    def run(app: Appliance) -> None:
        with app.control.transaction() as tx:
            write(tx)

    in_app(home, run)


def _event(action: str, subject: str, details: dict):
    return lambda home: _control_write(
        home, lambda tx: tx.append_audit(ACTOR, action, subject, details)
    )


def _deployment(home: Path) -> None:
    _control_write(home, lambda tx: tx.put_deployment("credit", "green", 1, 2, ACTOR))


PLANTED = {
    "ingest event without its batch": _event(
        "data.ingest", "loans", {"batch": "0" * 32, "rows": 5, "created": False, "file": "x"}
    ),
    "decision event without its records": _event(
        "decisions.logged", "0" * 32, {"rows": 1, "requests": 1, "records_sha256": "0"}
    ),
    "deployment without its event": _deployment,
    "spill file": lambda home: (home / "tmp").mkdir() or (home / "tmp" / "s.tmp").touch(),
}


@pytest.mark.parametrize("plant", PLANTED.values(), ids=PLANTED.keys())
def test_the_check_finds_what_reconciling_cannot_fix(template, tmp_path, plant):
    home = copy_home(template, tmp_path)  # consistent: see the template fixture
    plant(home)
    with pytest.raises(AssertionError):
        assert_consistent(home)


# -- (a) the named fault points --------------------------------------------------------


def test_every_fault_point_is_exercised():
    assert EXERCISED == set(faults.POINTS)


@exercises("ingest.data_committed")
@pytest.mark.parametrize("table", ["fresh", "loans"])
def test_ingest_killed_before_its_event_is_rolled_back(template, files, tmp_path, table):
    home = copy_home(template, tmp_path)
    crash(home, "ingest.data_committed", "ingest", files["extra"], "--table", table,
          "--entity", "customer_id", "--timestamp", "event_time")  # fmt: skip
    facts = reopen(home)
    assert facts.rows == {"loans": 3000}
    (undo,) = facts.of("reconcile.rollback")
    assert (undo["subject"], undo["details"]["rows"]) == (table, 500)
    assert [e["subject"] for e in facts.of("data.ingest")] == ["loans"]

    # redone, it creates the table only if it really did not exist
    r = Falaj(home).ok("ingest", files["extra"], "--table", table, "--entity", "customer_id",
                       "--timestamp", "event_time", "--json")  # fmt: skip
    assert json.loads(r.stdout)["total_rows"] == (500 if table == "fresh" else 3500)
    facts = assert_consistent(home)
    last = facts.of("data.ingest")[-1]
    assert (last["subject"], last["details"]["created"]) == (table, table == "fresh")
    assert facts.rows == ({"loans": 3000, "fresh": 500} if table == "fresh" else {"loans": 3500})


QUARANTINING = """
tables:
  loans:
    entity: customer_id
    event_time: event_time
    contract:
      policy: quarantine
      columns:
        income: {max: 15000}
"""


@exercises("quarantine.data_committed")
@pytest.mark.parametrize("action", ["release", "drop"])
def test_quarantine_release_or_drop_killed_before_its_event_is_undone(
    template, files, tmp_path, action
):
    """Rows held by a contract, then a forced release (or a drop) killed between its
    data commit and its event: reopening holds the rows again and lands nothing."""
    home = copy_home(template, tmp_path)
    falaj = Falaj(home)
    (tmp_path / "falaj.yaml").write_text(QUARANTINING)
    falaj.ok("apply", "--workspace", tmp_path / "falaj.yaml")
    r = json.loads(falaj.ok("ingest", files["extra"], "--table", "loans", "--json").stdout)
    held, batch = r["quarantined"], r["batch"]
    assert 0 < held < 500 and r["rows"] == 500 - held
    crash(home, "quarantine.data_committed", "quarantine", action, batch,
          *(["--force"] if action == "release" else []))  # fmt: skip
    facts = reopen(home)
    assert facts.rows == {"loans": 3500 - held}
    (undo,) = facts.of("reconcile.rollback")
    assert undo["details"]["change"] == f"data.quarantine.{action}"
    assert facts.of(f"data.quarantine.{action}") == []
    (listed,) = json.loads(falaj.ok("quarantine", "list", "--json").stdout)
    assert (listed["batch"], listed["rows"]) == (batch, held)

    # done again, it completes
    falaj.ok("quarantine", action, batch, *(["--force"] if action == "release" else []))
    facts = assert_consistent(home)
    assert facts.rows == {"loans": 3500 if action == "release" else 3500 - held}
    assert len(facts.of(f"data.quarantine.{action}")) == 1


@pytest.fixture(scope="module")
def register_crashed(template, tmp_path_factory) -> Path:
    """The template after `falaj train` was killed with credit@3's bundle published but
    not committed; each test reopens a copy."""
    home = copy_home(template, tmp_path_factory.mktemp("register"))
    crash(home, "register.bundle_written", *TRAIN)
    assert (home / "artifacts" / "credit" / "v3").is_dir()
    return home


@exercises("register.bundle_written")
def test_register_killed_before_commit_leaves_no_bundle(register_crashed, tmp_path):
    facts = reopen(copy_home(register_crashed, tmp_path))
    assert sorted(facts.versions) == ["credit@1", "credit@2"]


@exercises("register.bundle_written")
def test_register_killed_before_commit_is_undone_and_redone(register_crashed, tmp_path):
    home = copy_home(register_crashed, tmp_path)
    falaj = Falaj(home)
    falaj.ok("models", "list")  # the registry's first use removes the bundle
    facts = reopen(home)
    assert sorted(facts.versions) == ["credit@1", "credit@2"]
    (undo,) = facts.of("reconcile.rollback")
    assert undo["details"] == {"change": "model.register", "removed": ["artifacts/credit/v3"]}

    assert falaj.ok(*TRAIN).stdout.strip() == "3"
    facts = assert_consistent(home)
    assert sorted(facts.versions) == ["credit@1", "credit@2", "credit@3"]
    falaj.ok("models", "verify", "credit@3")


@exercises("register.bundle_written")
def test_a_first_registration_killed_before_commit_leaves_no_model_folder(template, tmp_path):
    home = copy_home(template, tmp_path)
    crash(home, "register.bundle_written", *TRAIN[:6], "fresh")
    assert (home / "artifacts" / "fresh" / "v1").is_dir()
    Falaj(home).ok("check")
    assert not (home / "artifacts" / "fresh").exists()
    assert "fresh@1" not in reopen(home).versions


@exercises("search.trial_recorded")
def test_a_search_killed_between_trials_reads_as_interrupted(template, tmp_path):
    """kill -9 after a search's second trial: its two trials stay recorded, the search
    reads as interrupted (not running), and nothing was registered."""
    home = copy_home(template, tmp_path)
    crash(home, "search.trial_recorded:2", *TRAIN[:6], "searched", *TRAIN[7:],
          "--search", "random", "--trials", "4")  # fmt: skip
    facts = reopen(home)
    assert not any(v.startswith("searched@") for v in facts.versions)
    runs = json.loads(Falaj(home).ok("models", "runs", "searched", "--json").output)
    assert sorted((r["kind"], r["status"]) for r in runs) == [
        ("search", "interrupted"), ("trial", "completed"), ("trial", "completed")]  # fmt: skip
    # a later search of the same model runs and registers as usual
    r = Falaj(home).ok(*TRAIN[:6], "searched", *TRAIN[7:], "--search", "random", "--trials", "2")
    assert r.stdout.strip() == "1"


@exercises("deploy.loaded")
def test_deploy_killed_before_commit_changes_nothing(template, tmp_path):
    home = copy_home(template, tmp_path)
    crash(home, "deploy.loaded", "deploy", "credit", "--version", "2")
    facts = reopen(home)
    assert facts.deployments == {
        "credit": {"live_slot": "blue", "blue_version": 1, "green_version": None}
    }
    assert len(facts.of("model.deploy")) == 1

    r = json.loads(Falaj(home).ok("deploy", "credit", "--version", "2", "--json").stdout)
    assert (r["slot"], r["previous_version"]) == ("green", 1)
    assert assert_consistent(home).deployments["credit"]["live_slot"] == "green"


@exercises("deploy.committed")
def test_deploy_killed_after_commit_is_live_on_restart(template, tmp_path):
    home = copy_home(template, tmp_path)
    crash(home, "deploy.committed", "deploy", "credit", "--version", "2")
    facts = reopen(home)
    assert facts.deployments == {
        "credit": {"live_slot": "green", "blue_version": 1, "green_version": 2}
    }
    assert facts.of("model.deploy")[-1]["subject"] == "credit@2"
    # a restarted process serves what was committed
    assert in_app(home, lambda app: app.serving.predict("credit", [RECORD], ACTOR))["version"] == 2


@exercises("rollback.committed")
def test_rollback_killed_after_commit_is_live_on_restart(template, tmp_path):
    home = copy_home(template, tmp_path)
    in_app(home, lambda app: app.serving.deploy("credit", 2, ACTOR))
    crash(home, "rollback.committed", "rollback", "credit")
    facts = reopen(home)
    assert facts.deployments == {
        "credit": {"live_slot": "blue", "blue_version": 1, "green_version": 2}
    }
    assert facts.of("model.rollback")[-1]["subject"] == "credit@1"

    def predict_roll_forward(app):
        assert app.serving.predict("credit", [RECORD], ACTOR)["version"] == 1
        app.serving.rollback("credit", ACTOR)
        return app.serving.predict("credit", [RECORD], ACTOR)["version"]

    assert in_app(home, predict_roll_forward) == 2
    assert assert_consistent(home).deployments["credit"]["live_slot"] == "green"


@exercises("decisions.data_committed", "decisions.committed")
@pytest.mark.parametrize("point", ["decisions.data_committed", "decisions.committed"])
def test_server_killed_while_logging_a_decision(template, tmp_path, start_server, point):
    home = copy_home(template, tmp_path)
    server = serve(start_server, home, fault=point)
    with pytest.raises(OSError):  # the answer is never sent
        server.request("POST", "/api/v1/models/credit/predict", {"records": [RECORD] * 3})
    assert server.proc.wait(timeout=30) == KILLED
    facts = reopen(home)
    if point == "decisions.data_committed":
        # records committed, event not: never answered (durable), so taken back at reopen
        assert facts.of("decisions.logged") == [] and facts.decisions == 0
        (undo,) = facts.of("reconcile.rollback")
        assert undo["details"] == {"change": "decisions.logged", "rows": 3, "answered": False}
    else:
        (event,) = facts.of("decisions.logged")
        assert facts.decisions == event["details"]["rows"] == 3
        assert "recovered" not in event["details"]

    def predict_again(app):
        answer = app.serving.predict("credit", [RECORD], ACTOR)
        return app.serving.decision(answer["request_id"], ACTOR)

    assert in_app(home, predict_again)["verified"]
    assert assert_consistent(home).decisions == (1 if point == "decisions.data_committed" else 4)


@exercises("migrate.applied")
@pytest.mark.parametrize("nth", [1, 2])
def test_upgrade_killed_between_migration_and_event(old_home, tmp_path, nth):
    """Opening an earlier release's home migrates it; a kill after a migration commits
    (control.db's, then features.duckdb's) leaves it to be audited on the next open."""
    home = copy_home(old_home, tmp_path)
    crash(home, f"migrate.applied:{nth}", "check")
    facts = reopen(home)
    migrated: dict[str, list[str]] = {}
    for e in facts.of("home.migrate"):
        migrated.setdefault(e["subject"], []).extend(e["details"]["migrations"])
    # what the old home lacked, each audited once
    assert migrated == {
        "control.db": [m.name for m in control_store.MIGRATIONS[2:]],
        "features.duckdb": [m.name for m in features_store.MIGRATIONS[1:]],
    }
    r = Falaj(home).ok("init", "--json")
    assert json.loads(r.stdout)["changed"] is False


@exercises("migrate.applied")
@pytest.mark.parametrize(
    "nth",
    [
        1,  # control.db's first migration committed, features.duckdb not yet created
        len(control_store.MIGRATIONS) + 1,  # control.db complete, features.duckdb's first
    ],
)
def test_first_init_killed_between_migrations(tmp_path, nth):
    home = tmp_path / "home"
    crash(home, f"migrate.applied:{nth}", "init")
    Falaj(home).ok("init")  # finishes the home
    reopen(home)


# -- (b) kills at random moments of a large ingest -------------------------------------


@pytest.fixture(scope="module")
def big_parquet(tmp_path_factory) -> Path:
    return demo.write(tmp_path_factory.mktemp("big") / "big.parquet", BIG_ROWS, seed=11)


def opened_store(proc: subprocess.Popen, home: Path, timeout: float = 60) -> None:
    """Wait until the process has features.duckdb open (its imports and start-up are
    done: what follows is the command's own work), or has exited."""
    store = str((home / "features.duckdb").resolve())
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
            if any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == store for fd in fds):
                return
        except OSError:  # it exited meanwhile, or closed that descriptor
            pass
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches the process in /proc")
def test_ingest_killed_at_random_moments(template, big_parquet, tmp_path):
    home = copy_home(template, tmp_path)
    rng = random.Random(20261129)
    args = ("ingest", big_parquet, "--table", "big", "--entity", "customer_id",
            "--timestamp", "event_time")  # fmt: skip
    outcomes = []
    for i in range(3):
        # one kill in each third of the first 2.1 s of work: reading and validating the
        # file, writing the rows, committing (the whole ingest takes 2-3 s on 2 cores)
        delay = rng.uniform(0.7 * i, 0.7 * (i + 1))
        proc = subprocess.Popen(command(home, *args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        opened_store(proc, home)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, KILLED), err.decode()
        outcomes.append(proc.returncode)
        facts = reopen(home)
        committed = [e for e in facts.of("data.ingest") if e["subject"] == "big"]
        assert facts.rows.get("big", 0) == BIG_ROWS * len(committed)
        assert facts.rows["loans"] == 3000
    assert outcomes[0] == KILLED

    existed = "big" in facts.rows
    Falaj(home).ok(*args)
    facts = assert_consistent(home)
    last = facts.of("data.ingest")[-1]
    assert (last["subject"], last["details"]["created"]) == ("big", not existed)
    assert facts.rows["big"] == BIG_ROWS * len([e for e in facts.of("data.ingest")
                                                if e["subject"] == "big"])  # fmt: skip


# -- (c) the server killed under load ---------------------------------------------------


class Load:
    """Client threads posting predictions over keep-alive connections until the server
    goes away; keeps every answer received with status 200."""

    def __init__(self, port: int, headers: dict[str, str], threads: int = 6) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json"} | headers
        self.answers: list[dict] = []
        self.refused: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while True:
            i += 1
            rows = 1 + i % 3
            records = [RECORD | {"age": 20.0 + n, "income": 1000.0 * i + j} for j in range(rows)]
            body = json.dumps({"records": records}).encode()
            try:
                conn.request("POST", "/api/v1/models/credit/predict", body, self.headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                return  # the server was killed
            with self.lock:
                if resp.status == 200:
                    self.answers.append(json.loads(data))
                else:
                    self.refused.append((resp.status, data))

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while len(self.answers) < n and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.answers) >= n, f"{len(self.answers)} answers in {timeout}s"

    def join(self) -> list[dict]:
        for t in self.threads:
            t.join(timeout=60)
        assert not self.refused, self.refused[:3]
        return self.answers


def assert_found(server, answers: list[dict]) -> None:
    """Through the API: a received answer's decision, by its request id."""
    for a in answers:
        status, d = server.request("GET", f"/api/v1/decisions/{a['request_id']}")
        assert status == 200, d
        assert (d["model"], d["version"], d["verified"]) == ("credit", a["version"], True), d
        assert d["outputs"] == a["predictions"]


def assert_all_logged(home: Path, answers: list[dict]) -> None:
    """Every received answer's every output is in the decision log, as answered."""
    rows = in_app(home, lambda app: app.features.query(
        "SELECT request_id, row_in_request, version, output FROM _predictions"
    ))  # fmt: skip
    logged = {(r["request_id"], r["row_in_request"]): (r["version"], r["output"]) for r in rows}
    answered = {(a["request_id"], i): (a["version"], p)
                for a in answers for i, p in enumerate(a["predictions"])}  # fmt: skip
    lost = [k for k, v in answered.items() if logged.get(k) != v]
    assert not lost, f"{len(lost)} of {len(answered)} answered predictions not logged as sent"


def test_server_killed_under_load(template, tmp_path, start_server):
    home = copy_home(template, tmp_path)
    server = serve(start_server, home)
    load = Load(server.port, server.headers())
    load.wait_for(40)
    kill(server)
    answers = load.join()

    restarted = serve(start_server, home)
    assert_found(restarted, answers[-10:])  # those answered just before the kill
    restarted.stop()
    assert_all_logged(home, answers)
    facts = reopen(home)
    assert facts.decisions >= sum(len(a["predictions"]) for a in answers)


def test_server_killed_during_a_deploy(template, tmp_path, start_server):
    home = copy_home(template, tmp_path)
    server = serve(start_server, home)
    load = Load(server.port, server.headers())
    load.wait_for(20)
    deploy = subprocess.Popen(command(home, "deploy", "credit", "--version", "2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    time.sleep(random.Random(7).uniform(0.5, 1.5))  # start-up is about a second
    kill(server)
    answers = load.join()
    out, _ = deploy.communicate(timeout=60)
    assert deploy.returncode == 0, out.decode()
    assert {a["version"] for a in answers} <= {1, 2}

    restarted = serve(start_server, home)
    assert restarted.request("GET", "/healthz")[1]["deployments"]["credit"]["version"] == 2
    assert_found(restarted, answers[-10:])
    status, body = restarted.request(
        "POST", "/api/v1/models/credit/predict", {"records": [dict.fromkeys(FEATURES, 2.0)]}
    )
    assert (status, body["version"]) == (200, 2)
    restarted.stop()
    assert_all_logged(home, answers)
    facts = reopen(home)
    assert facts.deployments["credit"] == {"live_slot": "green", "blue_version": 1,
                                           "green_version": 2}  # fmt: skip
