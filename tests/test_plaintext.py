"""No plaintext outside the stores, and tight permissions.

A canary string (new each run, so no source file holds it) goes into the stores; then
every file that could hold a copy is read while the appliance works: the home, the
working directory, /tmp and DuckDB's spill folder during a sort that spills, the WALs,
and the server's log. Outside systemd the home is 0700 and everything in it private.
"""

import os
import shutil
import stat
import time
import uuid
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from appliance.core import Appliance
from appliance.stores.features import connect_memory
from tests.conftest import ACTOR, RECORD

ROWS = 300_000  # about 36 MB of notes
SPILL_LIMIT = "32MB"  # sorting them spills at any limit from 20 MB to 48 MB (measured)


@pytest.fixture(scope="module")
def canary() -> bytes:
    return f"CANARY-{uuid.uuid4().hex}".encode()


@pytest.fixture(scope="module")
def secrets(canary) -> pa.Table:
    """Rows whose notes hold the canary and random text that no compression shrinks."""
    con = duckdb.connect(config={"temp_directory": ""})  # made in memory, never spilled
    try:
        return con.execute(
            "SELECT range AS id, TIMESTAMP '2025-01-01' AS ts, ? || '-' || range || '-' || "
            "gen_random_uuid()::VARCHAR || gen_random_uuid()::VARCHAR AS note FROM range(?)",
            [canary.decode(), ROWS],
        ).fetch_arrow_table()
    finally:
        con.close()


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """A working directory of its own, where DuckDB's default ./.tmp would land."""
    path = tmp_path / "cwd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def files_holding(needle: bytes, *roots: Path, since: float = 0.0, skip=()) -> list[str]:
    """Regular files under the roots, changed since ``since``, that contain ``needle``.

    ``skip``: files not to open now. Opening and closing a descriptor of a DuckDB file
    that this process has open drops DuckDB's lock on it."""
    found = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                if path in skip:
                    continue
                try:
                    st = path.lstat()
                    if not stat.S_ISREG(st.st_mode) or st.st_mtime < since:
                        continue
                    if needle in path.read_bytes():
                        found.append(str(path))
                except OSError:  # gone meanwhile, or another user's
                    continue
    return found


def spill_a_sort(con: duckdb.DuckDBPyConnection, secrets: pa.Table, canary: bytes) -> None:
    """Sort the canary's rows in an in-memory database under a memory limit they
    exceed, leaving the sorted rows on disk (if it may spill) while the first is read."""
    con.register("src", secrets)
    con.execute("CREATE TABLE secrets AS SELECT * FROM src")
    con.unregister("src")
    con.execute("SET threads = 1")  # a memory use that does not depend on the cores
    con.execute(f"SET memory_limit = '{SPILL_LIMIT}'")
    result = con.execute("SELECT note, id FROM secrets ORDER BY id DESC")
    assert result.fetchone()[0].encode().startswith(canary)


def test_the_scan_finds_a_canary_in_an_unencrypted_spill(secrets, canary, tmp_path):
    """The checks below are worth something: DuckDB's default spill, without
    encryption, holds the canary in plaintext, and the scan finds it."""
    spill = tmp_path / "plain-spill"
    con = duckdb.connect(config={"temp_directory": str(spill)})
    try:
        spill_a_sort(con, secrets, canary)
        assert files_holding(canary, spill)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)  # no plaintext left for the scans below


def test_spills_are_encrypted_private_and_inside_the_home(secrets, canary, home, cwd):
    t0 = time.time() - 1
    # the store files stay shut while this process has them open (read once closed)
    open_now = {home / n for n in ("features.duckdb", "control.db", "control.db-wal",
                                   "control.db-shm")}  # fmt: skip
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        with app.features.transaction() as tx:
            tx.create_table("secrets", {"id": "BIGINT", "ts": "TIMESTAMP", "note": "VARCHAR"},
                            "id", "ts", datetime(2025, 1, 1))  # fmt: skip
            tx.append("secrets", secrets)
        app.features.checkpoint()
        # An ingest stays in the WAL until a checkpoint: encrypted there too. (DuckDB
        # locks the database file, not its WAL, so reading the WAL here is harmless.)
        app.ingestion.ingest(secrets.slice(0, 100), "recent", "id", "ts", ACTOR)
        wal = home / "features.duckdb.wal"
        assert wal.stat().st_size > 0
        assert files_holding(canary, wal) == []

        app.features.set_memory_limit(SPILL_LIMIT)
        cur = app.features.cursor()
        try:
            cur.execute("SET threads = 1")  # a memory use that does not depend on the cores
            result = cur.execute("SELECT note, id FROM secrets ORDER BY id DESC")
            first = result.fetchone()  # the sort is done and spilled; the rest waits on disk
            assert first[0].encode().startswith(canary) and first[1] == ROWS - 1

            spill = home / "tmp"
            spilled = sorted(spill.iterdir())
            assert sum(p.stat().st_size for p in spilled) > 4 << 20
            assert stat.S_IMODE(spill.stat().st_mode) == 0o700
            assert {stat.S_IMODE(p.stat().st_mode) for p in spilled} == {0o600}
            assert not (cwd / ".tmp").exists()
            # during the spill: no file anywhere holds the canary in plaintext
            assert files_holding(canary, spill, home, cwd, skip=open_now) == []
            assert files_holding(canary, Path("/tmp"), since=t0, skip=open_now) == []
        finally:
            cur.close()
    finally:
        app.close()
    assert not any((home / "tmp").glob("*")), "spill files outlive the store"
    # at rest, the stores included: the canary is there only through the key
    assert files_holding(canary, home, cwd) == []
    assert files_holding(canary, Path("/tmp"), since=t0) == []
    app = Appliance.open({"home": str(home)})
    try:
        assert app.features.row_count("secrets") == ROWS
        assert app.features.query("SELECT note FROM recent WHERE id = 7")[0]["note"].startswith(
            canary.decode()
        )
    finally:
        app.close()


def test_validation_never_spills_plaintext(secrets, canary, cwd, tmp_path):
    """The in-memory connection that validates input spills nowhere by default (DuckDB's
    default is ./.tmp, in plaintext): past its memory it fails. Given a folder, it
    spills there, encrypted."""
    con = connect_memory()
    try:
        with pytest.raises(duckdb.OutOfMemoryException):
            spill_a_sort(con, secrets, canary)
    finally:
        con.close()
    assert list(cwd.iterdir()) == []

    spill = tmp_path / "validation-spill"
    con = connect_memory(spill)
    try:
        spill_a_sort(con, secrets, canary)
        assert any(spill.iterdir())
        assert files_holding(canary, spill, cwd) == []
    finally:
        con.close()
    assert list(cwd.iterdir()) == []


def private(home: Path) -> list[str]:
    """Paths under the home that others could read: not 0700 (folders) or 0600 (files)."""
    loose = []
    for path in [home, *home.rglob("*")]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # a running server's file, gone meanwhile
            continue
        if stat.S_IMODE(st.st_mode) != (0o700 if stat.S_ISDIR(st.st_mode) else 0o600):
            loose.append(f"{path.relative_to(home.parent)} {stat.S_IMODE(st.st_mode):o}")
    return loose


def test_run_demo_home_is_private_and_leaves_no_plaintext(
    home, cwd, canary, start_server, monkeypatch
):
    """`falaj run --demo` on an empty home outside systemd: every folder 0700, every
    file 0600 (stores, WALs, keys, bundles) while it runs; no copy of the demo data and
    no request's contents in any file, its log included."""
    t0 = time.time() - 1
    monkeypatch.setenv("FALAJ_DEMO_ROWS", "2000")
    server = start_server(home, "--demo")
    records = [RECORD | {"note": canary.decode()}, RECORD | {"income": canary.decode()}]
    for body in ({"records": records[:1]}, {"records": records[1:]}, {"records": canary.decode()}):
        status, _ = server.request("POST", "/api/v1/models/credit_risk/predict", body)
        assert status in (200, 400)
    status, _ = server.request("GET", f"/api/v1/decisions/{canary.decode()}")
    assert status == 404

    names = {p.name for p in home.iterdir()}
    assert {"control.db", "control.db-wal", "features.duckdb", "keys", "artifacts"} <= names
    assert any(home.glob("artifacts/credit_risk/v1/*"))
    assert private(home) == []
    server.stop()
    assert private(home) == []

    log = server.log.read_text()
    assert "demo: ingested 2000 rows" in log
    assert canary.decode() not in log
    assert files_holding(canary, home, cwd) == []
    assert files_holding(canary, Path("/tmp"), since=t0) == []
    # the demo's categorical values, were a plaintext copy of its data left behind
    for value in (b"abu_dhabi", b"sharjah", b"northern"):
        assert files_holding(value, home, cwd) == [], value
