"""The audit chain: append-only, hash-linked, and verify names the first bad event."""

import json

import pytest
import sqlcipher3

from appliance import audit, keys


def open_raw(home):
    """control.db opened with the store's own key, as an insider with the key could."""
    master = keys.read_key(home / "keys" / "master.key")
    conn = sqlcipher3.connect(str(home / "control.db"), isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{keys.derive(master, 'control.db').hex()}'\"")
    return conn


def seeded(falaj, tmp_path, n=4):
    falaj.ok("init")
    for i in range(n):
        p = tmp_path / f"f{i}.csv"
        p.write_text(f"id,ts,x\n{i},2025-01-0{i + 1},{i}\n")
        falaj.ok("ingest", p, "--table", "t", "--entity", "id", "--timestamp", "ts")


def test_verify_counts_events(falaj, tmp_path):
    seeded(falaj, tmp_path)
    r = falaj.ok("audit", "verify")
    assert r.output.strip() == "audit chain verified: 5 events (5 hashed now)"
    r = falaj.ok("audit", "tail", "-n", "2")
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and lines[-1].lstrip().startswith("5 ") and "data.ingest" in lines[-1]


def test_the_store_refuses_updates_and_deletes(falaj, home, tmp_path):
    seeded(falaj, tmp_path, 1)
    conn = open_raw(home)
    with pytest.raises(sqlcipher3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_events SET actor = 'x' WHERE seq = 1")
    with pytest.raises(sqlcipher3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_events WHERE seq = 1")


def test_altered_event_is_named(falaj, home, tmp_path):
    seeded(falaj, tmp_path)
    conn = open_raw(home)
    conn.execute("DROP TRIGGER audit_no_update")
    details = json.loads(
        conn.execute("SELECT details FROM audit_events WHERE seq = 3").fetchone()[0]
    )
    details["rows"] = 1000
    conn.execute(
        "UPDATE audit_events SET details = ? WHERE seq = 3", (audit.canonical_json(details),)
    )
    conn.close()
    r = falaj("audit", "verify")
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        "error: audit chain broken at event 3: event 3 (data.ingest t) was altered (2 events verified before it)"
    )


def test_rehashed_event_breaks_the_link(falaj, home, tmp_path):
    """An insider who recomputes the altered event's own hash still breaks event 4's link."""
    seeded(falaj, tmp_path)
    conn = open_raw(home)
    conn.execute("DROP TRIGGER audit_no_update")
    r = conn.execute("SELECT * FROM audit_events WHERE seq = 3").fetchone()
    new_hash = audit.event_hash(r[6], r[0], r[1], "cli:mallory", r[3], r[4], r[5])
    conn.execute(
        "UPDATE audit_events SET actor = 'cli:mallory', hash = ? WHERE seq = 3", (new_hash,)
    )
    conn.close()
    r = falaj("audit", "verify", "--json")
    assert r.exit_code == 1
    assert "event 4 does not link to event 3" in r.stderr


def test_deleted_event_is_named(falaj, home, tmp_path):
    seeded(falaj, tmp_path)
    conn = open_raw(home)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit_events WHERE seq = 2")
    conn.close()
    r = falaj("audit", "verify")
    assert r.exit_code == 1
    assert "event 2 is missing" in r.stderr


def test_event_hash_is_deterministic():
    a = audit.event_hash(audit.GENESIS, 1, "t", "cli:a", "x", "s", "{}")
    assert a == audit.event_hash(audit.GENESIS, 1, "t", "cli:a", "x", "s", "{}")
    assert a != audit.event_hash(audit.GENESIS, 1, "t", "cli:b", "x", "s", "{}")
    assert len(a) == 64


def test_verification_is_incremental_from_the_stored_head(falaj, tmp_path):
    seeded(falaj, tmp_path)
    first = json.loads(falaj.ok("audit", "verify", "--json").stdout)
    assert (first["checked"], first["hashed"]) == (5, 5)
    again = json.loads(falaj.ok("audit", "verify", "--json").stdout)
    assert (again["checked"], again["hashed"]) == (5, 0)  # nothing new to hash
    p = tmp_path / "more.csv"
    p.write_text("id,ts,x\n9,2025-02-01,9\n")
    falaj.ok("ingest", p, "--table", "t", "--entity", "id", "--timestamp", "ts")
    more = json.loads(falaj.ok("audit", "verify", "--json").stdout)
    assert (more["checked"], more["hashed"]) == (6, 1)
    full = json.loads(falaj.ok("audit", "verify", "--full", "--json").stdout)
    assert (full["checked"], full["hashed"]) == (6, 6)


def test_a_chain_cut_at_its_tail_is_caught(falaj, home, tmp_path):
    seeded(falaj, tmp_path)
    falaj.ok("audit", "verify")  # the head is now event 5
    conn = open_raw(home)
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit_events WHERE seq >= 4")
    conn.close()
    r = falaj("audit", "verify")
    assert r.exit_code == 1
    assert "the chain ends at event 3, but event 5 was verified before" in r.stderr


def test_an_altered_verified_event_is_caught_without_a_full_pass(falaj, home, tmp_path):
    seeded(falaj, tmp_path)
    falaj.ok("audit", "verify")
    conn = open_raw(home)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit_events SET hash = ? WHERE seq = 5", ("f" * 64,))
    conn.close()
    r = falaj("audit", "verify")
    assert r.exit_code == 1 and "event 5 changed since it was verified" in r.stderr
    # an event before the head needs --full, which re-hashes from the start
    conn = open_raw(home)
    conn.execute("UPDATE audit_events SET actor = 'cli:mallory' WHERE seq = 2")
    conn.close()
    r = falaj("audit", "verify", "--full")
    assert r.exit_code == 1 and "event 2 (data.ingest t) was altered" in r.stderr
