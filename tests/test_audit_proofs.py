"""Provable audit: the chain's RFC 6962 Merkle tree, signed checkpoints outside the
store, what `audit verify` catches against them (a cut tail, an old page spliced in, a
rolled-back file), receipts and their proofs, the export and its standalone verifier."""

import ast
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import sqlcipher3

from appliance import demo, keys
from appliance.audit import ReceiptPending, checkpoints, merkle
from appliance.audit import verify_export as ve
from appliance.core import Appliance
from appliance.errors import BadInput, NotFound
from tests.conftest import ACTOR, FEATURES, RECORD

ROOT = Path(__file__).resolve().parent.parent
VERIFIER = ROOT / "appliance" / "audit" / "verify_export.py"
PAGE = 4096

# -- the tree ------------------------------------------------------------------------


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_small_trees_by_hand():
    a, b, c = leaves(3)
    assert merkle.root_of([]) == hashlib.sha256(b"").digest()
    assert merkle.root_of([a]) == a
    ab = hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.root_of([a, b]) == ab
    assert merkle.root_of([a, b, c]) == hashlib.sha256(b"\x01" + ab + c).digest()
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    t = merkle.Tree([a, b, c])
    assert t.inclusion(2) == [ab]  # c's sibling is the whole left subtree
    assert t.inclusion(0) == [b, c]
    assert t.consistency(2, 3) == [c]  # size 2 is a power of two: its root is implied
    assert t.consistency(1, 3) == [b, c]


def test_every_tree_up_to_40_against_brute_force():
    ls = leaves(40)
    grown = merkle.Tree()
    for n in range(41):
        tree = merkle.Tree(ls[:n])
        if n:
            grown.extend([ls[n - 1]])
        assert tree.root() == merkle.naive_root(ls[:n]) == grown.root(), n
        assert ve.Tree(ls[:n]).mth(0, n) == tree.root()  # the standalone copy agrees
        for i in range(n):
            path = tree.inclusion(i)
            assert merkle.verify_inclusion(i, n, ls[i], path, tree.root())
            assert ve.verify_inclusion(i, n, ls[i], path, tree.root())
            assert not merkle.verify_inclusion(i, n, ls[(i + 1) % n], path, tree.root()) or n == 1
            if path:
                bad = [bytes(32)] + path[1:]
                assert not merkle.verify_inclusion(i, n, ls[i], bad, tree.root())
        for m in range(n + 1):
            old = merkle.naive_root(ls[:m])
            assert tree.root(m) == old
            proof = tree.consistency(m, n)
            assert proof == ve.Tree(ls[:n]).consistency(m, n)
            assert merkle.verify_consistency(m, n, old, tree.root(), proof), (m, n)
            assert ve.verify_consistency(m, n, old, tree.root(), proof)
            if 0 < m < n:
                assert not merkle.verify_consistency(m, n, bytes(32), tree.root(), proof)
                assert not merkle.verify_consistency(m, n, old, bytes(32), proof)


# -- a home with decisions -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """A closed home: data ingested, credit@1 trained, deployed and predicting."""
    home = tmp_path_factory.mktemp("served") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("FALAJ_HOME", "FALAJ_MASTER_KEY_FILE", "CREDENTIALS_DIRECTORY"):
            mp.delenv(var, raising=False)
        app = Appliance.open({"home": str(home)})
        try:
            app.init(ACTOR)
            app.ingestion.ingest(
                demo.credit_risk(1500, seed=3), "loans", "customer_id", "event_time", ACTOR
            )
            app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
            app.serving.deploy("credit", 1, ACTOR)
        finally:
            app.close()
    return home


@pytest.fixture
def app(served, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(served, home)
    appliance = Appliance.open({"home": str(home)})
    yield appliance
    appliance.close()


def open_raw(home: Path):
    master = keys.read_key(home / "keys" / "master.key")
    conn = sqlcipher3.connect(str(home / "control.db"), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{keys.derive(master, 'control.db').hex()}'\"")
    return conn


def add_events(app, n: int, pad: int = 0) -> None:
    with app.control.transaction() as tx:
        for i in range(n):
            tx.append_audit(ACTOR, "test.event", f"e{i}", {"pad": "x" * pad})


# -- checkpoints --------------------------------------------------------------------------


def test_a_checkpoint_is_signed_appended_outside_the_store_and_indexed(app, falaj):
    c = app.audit.checkpoint(ACTOR)
    count = app.control.audit_count()
    assert (c["size"], c["line_no"], c["written"]) == (count, 1, True)
    assert (
        c["root"]
        == merkle.naive_root(
            [merkle.leaf_hash(bytes.fromhex(h)) for _, h in app.control.audit_hashes()]
        ).hex()
    )
    log = app.home / "audit" / "checkpoints.log"
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert (
        record["public_key"]
        == checkpoints.public_bytes(
            checkpoints.private_key(keys.derive(app.master_key, "audit-checkpoint"))
        ).hex()
    )
    assert checkpoints.good_signature(record["public_key"], record["sig"], record)
    forged = record | {"size": record["size"] + 1}
    assert not checkpoints.good_signature(record["public_key"], record["sig"], forged)
    assert [c["line"] for c in app.control.checkpoint_lines()] == [line]
    # the scheduler's kind: nothing new, nothing written
    again = app.audit.checkpoint(ACTOR, if_changed=True)
    assert again["written"] is False and len(log.read_text().splitlines()) == 1
    add_events(app, 3)
    v = app.audit.verify(ACTOR)
    assert v.ok and v.checkpoint == count


def test_cli_checkpoint_copy_and_verify_against_it(served, tmp_path):
    from tests.conftest import Falaj

    home = tmp_path / "home"
    shutil.copytree(served, home)
    falaj = Falaj(home)
    usb = tmp_path / "usb"
    usb.mkdir()
    r = falaj.ok("audit", "checkpoint", "--copy-to", usb)
    assert r.output.startswith("checkpoint 1: ") and "signed by key" in r.output
    assert (usb / "checkpoints.log").read_text() == (home / "audit/checkpoints.log").read_text()
    r = falaj.ok("audit", "verify")
    assert "matches signed checkpoint" in r.output
    listed = json.loads(falaj.ok("audit", "checkpoints", "--json").stdout)
    assert [c["line_no"] for c in listed] == [1]


def test_a_tail_cut_with_the_real_key_is_caught(app):
    add_events(app, 5)
    c = app.audit.checkpoint(ACTOR)
    app.close()
    conn = open_raw(app.home)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit_events WHERE seq > ?", (c["size"] - 3,))
    # the insider also moves the verified head back, so only the checkpoint knows
    last = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE audit_verified SET seq = ?, hash = ?", last)
    conn.close()
    reopened = Appliance.open({"home": str(app.home)})
    try:
        v = reopened.audit.verify(ACTOR)
    finally:
        reopened.close()
    assert not v.ok
    assert v.first_bad == c["size"] - 2
    assert f"covers {c['size']} events: its tail was cut" in v.reason


def test_a_whole_file_rolled_back_to_an_older_copy_is_caught(app, falaj, tmp_path):
    from tests.conftest import Falaj

    app.close()
    yesterday = tmp_path / "yesterday.db"
    shutil.copy(app.home / "control.db", yesterday)
    reopened = Appliance.open({"home": str(app.home)})
    add_events(reopened, 4)
    c = reopened.audit.checkpoint(ACTOR)
    reopened.close()
    shutil.copy(yesterday, app.home / "control.db")  # restore yesterday's copy
    r = Falaj(app.home)("audit", "verify")
    assert r.exit_code == 1
    assert f"covers {c['size']} events: its tail was cut, or the file was rolled back" in r.stderr
    # ... and after new events grow it past the checkpoint's size again
    reopened = Appliance.open({"home": str(app.home)})
    try:
        add_events(reopened, 6)
        v = reopened.audit.verify(ACTOR)
    finally:
        reopened.close()
    assert not v.ok and v.first_bad == c["size"]
    assert "is not the one checkpoint" in v.reason and "rolled back" in v.reason


def test_an_old_page_spliced_into_the_file_never_passes_unnoticed(app, tmp_path):
    """Every page that changed since an older copy, put back one at a time from that
    copy (SQLCipher's HMAC accepts it: same key, same page number): either verify
    fails, or the chain it reads is exactly the one checkpointed."""
    add_events(app, 20, pad=300)
    app.close()
    old = (app.home / "control.db").read_bytes()
    reopened = Appliance.open({"home": str(app.home)})
    add_events(reopened, 40, pad=300)
    reopened.audit.checkpoint(ACTOR)
    expected = reopened.control.audit_hashes()
    reopened.close()
    new = (app.home / "control.db").read_bytes()
    changed = [i for i in range(len(old) // PAGE) if old[i * PAGE:(i + 1) * PAGE] != new[i * PAGE:(i + 1) * PAGE]]  # fmt: skip
    assert changed
    caught = 0
    for i in changed:
        home = tmp_path / f"splice-{i}"
        shutil.copytree(app.home, home)
        with open(home / "control.db", "r+b") as f:
            f.seek(i * PAGE)
            f.write(old[i * PAGE : (i + 1) * PAGE])
        spliced = Appliance.open({"home": str(home)})
        try:
            v = spliced.audit.verify(ACTOR)
            intact = v.ok and spliced.control.audit_hashes() == expected
        except Exception as exc:  # damage the store names (exit 2): caught too
            assert "control.db" in str(exc)
            v, intact = None, False
        finally:
            with_suppress_close(spliced)
        if v is not None and v.ok:
            assert intact, f"page {i}: an old copy of it changed the chain unnoticed"
        else:
            caught += 1
    assert caught >= 1  # the page holding the events written after the copy, at least


def with_suppress_close(app) -> None:
    with contextlib.suppress(Exception):
        app.close()


def test_a_missing_or_cut_checkpoint_log_is_caught(app):
    app.audit.checkpoint(ACTOR)
    add_events(app, 1)
    app.audit.checkpoint(ACTOR)
    log = app.home / "audit" / "checkpoints.log"
    first = log.read_text().splitlines()[0]
    log.write_text(first + "\n")
    v = app.audit.verify(ACTOR)
    assert not v.ok and "has 1 lines, but control.db indexed 2" in v.reason
    log.unlink()
    v = app.audit.verify(ACTOR)
    assert not v.ok and "was cut short or replaced" in v.reason


def test_a_checkpoint_signed_by_another_key_is_refused(app):
    app.audit.checkpoint(ACTOR)
    log = app.home / "audit" / "checkpoints.log"
    foreign = checkpoints.private_key(bytes(range(32)))
    record = json.loads(log.read_text())
    forged = checkpoints.checkpoint_record(foreign, record["size"], bytes.fromhex(record["root"]),
                                           record["head"], record["time"])  # fmt: skip
    line = checkpoints.line_of(forged)
    log.write_text(line + "\n")
    v = app.audit.verify(ACTOR)
    assert not v.ok and "is not the one indexed" in v.reason


def test_key_rotation_chains_the_keys(app, tmp_path):
    from appliance.audit import AuditService

    app.audit.checkpoint(ACTOR)
    old, new = app.master_key, bytes(range(32))
    out = app.audit.rotate_checkpoint_key(old, new, ACTOR)
    assert out["rotation"]["new_key_id"] == out["checkpoint"]["key_id"]
    assert out["rotation"]["key_id"] != out["rotation"]["new_key_id"]
    rotated = AuditService(app.control, app.home, lambda: new)
    assert rotated.verify(ACTOR).ok
    assert app.control.audit_find("audit.key_rotated", "checkpoints.log")
    export = tmp_path / "audit.json"
    app.audit.export(ACTOR, export)
    assert ve.main([str(export)]) == 0
    stale = AuditService(app.control, app.home, lambda: old)  # the old key: not in force
    assert "not by this appliance's checkpoint key" in stale.verify(ACTOR).reason


# -- receipts -------------------------------------------------------------------------------


def test_a_receipt_is_pending_until_checkpointed_then_proved(app, tmp_path):
    answers = [app.serving.predict("credit", [RECORD, RECORD | {"age": 70.0}], ACTOR)
               for _ in range(3)]  # fmt: skip
    receipt = answers[1]["receipt"]
    assert receipt == answers[1]["request_id"]
    with pytest.raises(ReceiptPending, match="not in a signed checkpoint yet"):
        app.audit.prove(receipt, ACTOR)
    app.audit.checkpoint(ACTOR)
    p = app.audit.prove(receipt, ACTOR)
    assert p["verified"] and p["kind"] == "merkle" and len(p["decisions"]) == 2
    assert ve.check_proof(p) is None
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(p))
    r = subprocess.run([sys.executable, str(VERIFIER), str(path)], capture_output=True, text=True,
                       cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and f"receipt {receipt} is in checkpoint" in r.stdout
    # tampering with any link is named
    bad_leaf = json.loads(json.dumps(p))
    bad_leaf["decisions"][0]["leaf"] = "00" * 32
    assert "not in its batch's records_root" in ve.check_proof(bad_leaf)
    bad_event = json.loads(json.dumps(p))
    bad_event["event"]["details"] = bad_event["event"]["details"].replace('"rows":2', '"rows":3')
    assert "does not hash" in ve.check_proof(bad_event)
    bad_sig = json.loads(json.dumps(p))
    bad_sig["checkpoint"]["size"] += 1
    assert "signature" in ve.check_proof(bad_sig)
    with pytest.raises(NotFound):
        app.audit.prove("0" * 32, ACTOR)
    with pytest.raises(BadInput):
        app.audit.prove("../etc/passwd", ACTOR)


def test_a_receipt_whose_batch_is_not_written_is_pending(app):
    log = app.decision_log
    log.durable = False  # async: answered before the batch is written
    log.interval = 3600
    answer = app.serving.predict("credit", [RECORD], ACTOR)
    with pytest.raises(ReceiptPending, match="not written yet"):
        app.audit.prove(answer["receipt"], ACTOR)
    log.flush()
    app.audit.checkpoint(ACTOR)
    assert app.audit.prove(answer["receipt"], ACTOR)["verified"]


def test_a_batch_from_before_records_root_still_proves(tmp_path):
    """A home written by falaj 0.1.0: its batches' events have records_sha256 only."""
    with tarfile.open(ROOT / "tests/fixtures/home-0.1.0/home.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    expected = json.loads((ROOT / "tests/fixtures/home-0.1.0/expected.json").read_text())
    app = Appliance.open({"home": str(tmp_path / "home")})
    try:
        app.audit.checkpoint(ACTOR)
        p = app.audit.prove(expected["request_id"], ACTOR)
        assert p["verified"] and p["kind"] == "records_sha256"
        assert app.audit.verify(ACTOR, full=True).ok
    finally:
        app.close()


def test_receipts_in_every_protocol(served, tmp_path):
    from tests.conftest import admin_client

    home = tmp_path / "home"
    shutil.copytree(served, home)
    app = Appliance.open({"home": str(home)})
    try:
        client = admin_client(app)
        native = client.post("/api/v1/models/credit/predict", json={"records": [RECORD]})
        assert native.status_code == 200
        receipt = native.get_json()["receipt"]
        assert len(receipt) == 32
        mlflow = client.post("/invocations?model=credit", json={"dataframe_records": [RECORD]})
        assert mlflow.status_code == 200, mlflow.get_json()
        assert len(mlflow.headers["X-Falaj-Receipt"]) == 32
        v2 = client.post("/v2/models/credit/infer", json={"inputs": [
            {"name": f, "shape": [1], "datatype": "FP64", "data": [RECORD[f]]} for f in FEATURES]})  # fmt: skip
        assert v2.status_code == 200, v2.get_json()
        assert len(v2.get_json()["parameters"]["receipt"]) == 32
        pending = client.get(f"/api/v1/audit/proof/{receipt}")
        assert pending.status_code == 409 and "checkpoint" in pending.get_json()["error"]["message"]
        made = client.post("/api/v1/audit/checkpoint")
        assert made.status_code == 200 and made.get_json()["size"] >= 1
        proof = client.get(f"/api/v1/audit/proof/{receipt}")
        assert proof.status_code == 200 and proof.get_json()["verified"] is True
        assert client.get("/api/v1/audit/proof/nothex").status_code == 400
        listed = client.get("/api/v1/audit/checkpoints").get_json()
        assert listed["checkpoints"][0]["size"] == made.get_json()["size"]
        client.post("/api/v1/audit/checkpoint")
        c = client.get("/api/v1/audit/consistency").get_json()
        assert c["verified"] is True
        assert client.get("/api/v1/audit/consistency?from=5&to=1").status_code == 400
        assert client.get("/api/v1/audit/consistency?from=x").status_code == 400
    finally:
        app.close()


# -- export and the standalone verifier ---------------------------------------------------------


def test_the_verifier_imports_nothing_from_falaj():
    tree = ast.parse(VERIFIER.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [n for n in names if n and n.split(".")[0] == "appliance"], names


def test_export_verifies_standalone_and_names_a_tampered_event(app, falaj, tmp_path):
    from tests.conftest import Falaj

    app.serving.predict("credit", [RECORD], ACTOR)
    app.audit.checkpoint(ACTOR)
    add_events(app, 3)
    app.audit.checkpoint(ACTOR)
    app.close()
    out = tmp_path / "audit.json"
    r = Falaj(app.home).ok("audit", "export", "--out", out)
    assert "checkpoint lines" in r.output

    def verifier(path: Path, *extra: str) -> subprocess.CompletedProcess:
        # the file alone, outside the package: no store, no key, no network
        return subprocess.run([sys.executable, str(VERIFIER), str(path), *extra],
                              capture_output=True, text=True, cwd=tmp_path)  # fmt: skip

    ok = verifier(out)
    assert ok.returncode == 0, ok.stderr
    assert "3 checkpoints" in ok.stdout  # the export's own one signs every event in it
    assert "under no checkpoint" not in ok.stdout
    older = json.loads(out.read_text())
    older["checkpoints"] = older["checkpoints"][:1]  # as an export without its checkpoint
    assert ve.check_export(older).endswith("events are under no checkpoint, only the chain")
    doc = json.loads(out.read_text())
    doc["events"][2]["actor"] = "cli:mallory"
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    r = verifier(bad)
    assert r.returncode == 1
    assert r.stderr.strip() == f"FAILED: event 3 ({doc['events'][2]['action']} {doc['events'][2]['subject']}) was altered"  # fmt: skip
    doc = json.loads(out.read_text())
    line = json.loads(doc["checkpoints"][1])
    line["root"] = "00" * 32
    doc["checkpoints"][1] = checkpoints.line_of(line)
    bad.write_text(json.dumps(doc))
    assert verifier(bad).stderr.strip() == "FAILED: checkpoint line 2: bad signature"
    pinned = verifier(out, "--key", "11" * 32)
    assert pinned.returncode == 1 and "not by the key in force" in pinned.stderr
    (tmp_path / "junk.json").write_text("{")
    assert verifier(tmp_path / "junk.json").returncode == 2


def test_the_scheduler_signs_a_checkpoint_when_events_were_added(app):
    from appliance.scheduler import jobs

    job = app.scheduler.desired()["system:audit"]
    assert job["trigger"] == ("interval", 3600.0)  # audit_checkpoint_every: 1h
    jobs.bind(app)
    try:
        first = jobs.system("audit")
        again = jobs.system("audit")
        add_events(app, 2)
        third = jobs.system("audit")
    finally:
        jobs.bind(None)
    assert first["written"] and first["size"] == app.control.audit_count() - 2
    assert again["written"] is False and again["line_no"] == first["line_no"]
    assert third["written"] and third["size"] == first["size"] + 2


def test_a_recovered_batch_commits_to_its_records_root_too(app):
    """An answered batch whose event a crash kept from committing gets it on open, with
    the records' Merkle root: its receipts prove like any other."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from appliance.serving.decision_log import records_sha256

    answer = app.serving.predict("credit", [RECORD], ACTOR)
    rows = pa.Table.from_pylist(app.features.decisions(answer["request_id"]))
    receipt = "ab" * 16
    rows = rows.drop_columns(["batch_id"]).set_column(1, "request_id", pa.array([receipt]))
    at = datetime.now(UTC).replace(tzinfo=None)
    with app.features.transaction() as tx:
        tx.append_decisions(rows, "orphan", 1, records_sha256(rows), at, True)
    app.close()
    again = Appliance.open({"home": str(app.home)})
    try:
        again.features  # noqa: B018 -- opening the feature store settles the batch
        (event,) = again.control.audit_find("decisions.logged", "orphan")
        assert event["details"]["recovered"] is True and "records_root" in event["details"]
        again.audit.checkpoint(ACTOR)
        p = again.audit.prove(receipt, ACTOR)
        assert p["verified"] and p["kind"] == "merkle" and p["event"]["seq"] == event["seq"]
    finally:
        again.close()


def test_cli_prove_and_consistency(served, tmp_path):
    from tests.conftest import Falaj

    home = tmp_path / "home"
    shutil.copytree(served, home)
    app = Appliance.open({"home": str(home)})
    try:
        receipt = app.serving.predict("credit", [RECORD], ACTOR)["receipt"]
    finally:
        app.close()
    falaj = Falaj(home)
    r = falaj("audit", "prove", receipt)
    assert r.exit_code == 1 and "not in a signed checkpoint yet" in r.stderr
    first = json.loads(falaj.ok("audit", "checkpoint", "--json").stdout)
    out = tmp_path / "proof.json"
    r = falaj.ok("audit", "prove", receipt, "--out", out)
    assert r.output.splitlines()[-1] == "verified"
    assert f"to the root of checkpoint {first['size']}" in r.output
    assert ve.check_proof(json.loads(out.read_text())) is None
    falaj.ok("ingest", _tiny_csv(tmp_path), "--table", "t", "--entity", "id", "--timestamp", "ts")
    second = json.loads(falaj.ok("audit", "checkpoint", "--json").stdout)
    r = falaj.ok("audit", "consistency")
    assert r.output.startswith(f"consistency {first['size']} -> {second['size']}: ")
    assert r.output.strip().endswith(": verified")
    r = falaj("audit", "consistency", "--from", "5", "--to", "1")
    assert r.exit_code == 2 and "expected 0 <= from <= to" in r.stderr
    r = falaj("audit", "prove", "zz")
    assert r.exit_code == 2 and "expected the 32 hex digits" in r.stderr


def _tiny_csv(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.csv"
    p.write_text("id,ts,x\n1,2025-01-01,1\n")
    return p


def test_a_home_put_back_whole_is_caught_against_an_off_box_copy(app, tmp_path):
    """Store and checkpoint log both put back to yesterday's copy agree with each other;
    only a copy of the log kept off the box (--copy-to) tells."""
    from tests.conftest import Falaj

    app.audit.checkpoint(ACTOR)
    app.close()
    yesterday = tmp_path / "yesterday"
    shutil.copytree(app.home, yesterday)
    usb = tmp_path / "usb"
    usb.mkdir()
    reopened = Appliance.open({"home": str(app.home)})
    try:
        add_events(reopened, 3)
        reopened.audit.checkpoint(ACTOR, copy_to=usb)
    finally:
        reopened.close()
    for part in ("control.db", "audit"):
        target = app.home / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        (shutil.copytree if (yesterday / part).is_dir() else shutil.copy)(yesterday / part, target)
    falaj = Falaj(app.home)
    falaj.ok("audit", "verify")  # the box alone cannot tell
    r = falaj("audit", "verify", "--against", usb / "checkpoints.log")
    assert r.exit_code == 1
    assert "holds 2 checkpoint lines, this home's log only 1" in r.stderr
    assert "put back to an older copy" in r.stderr
    ok = falaj.ok("audit", "verify", "--against", yesterday / "audit")  # a folder: its log
    assert "matches signed checkpoint" in ok.output


def test_the_grpc_answer_carries_the_receipt(served, tmp_path, start_server):
    """Over gRPC, from a real `falaj run --grpc-port`. (Triton's generated messages: Falaj's
    share their names, so both cannot load in one process, and test_triton loads Triton's.)"""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    from tests.conftest import find_free_port

    home = tmp_path / "home"
    shutil.copytree(served, home)
    port = find_free_port()
    server = start_server(home, "--grpc-port", str(port))
    tensor = pb.ModelInferRequest.InferInputTensor
    request = pb.ModelInferRequest(model_name="credit", inputs=[
        tensor(name=f, datatype="FP64", shape=[1],
               contents=pb.InferTensorContents(fp64_contents=[RECORD[f]]))
        for f in FEATURES])  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            request, metadata=[("authorization", server.headers()["Authorization"])], timeout=30
        )
    receipt = response.parameters["receipt"].string_param
    assert len(receipt) == 32
    server.stop()  # its decision log is written as it stops
    app = Appliance.open({"home": str(home)})
    try:
        app.audit.checkpoint(ACTOR)
        assert app.audit.prove(receipt, ACTOR)["verified"]
    finally:
        app.close()
