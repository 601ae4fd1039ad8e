"""`falaj selftest`: every check passes on a sound home (TLS skipped on loopback), each
check fails when what it guards is broken, the report is signed, recorded in the audit
chain and verifiable after a key rotation, and the API and page show it."""

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import expect

from appliance import demo, selftest
from appliance.core import Appliance
from tests.conftest import ACTOR, FEATURES, Falaj
from tests.test_browser import browser, login  # noqa: F401

EXPECTED = [name for name, _ in selftest.CHECKS]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    home = tmp_path_factory.mktemp("selftest") / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        app.ingestion.ingest(demo.credit_risk(800, seed=11), "loans", "customer_id",
                             "event_time", ACTOR)  # fmt: skip
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    finally:
        app.close()
    return home


@pytest.fixture(scope="module")
def clean_temp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("empty-temp")


@pytest.fixture(scope="module")
def ran(template, clean_temp):
    """One CLI run on the template (a module's worth of assertions on it)."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(clean_temp)  # the system temp folder holds other tests' data
    try:
        r = Falaj(template)("selftest", "--json")
    finally:
        tempfile.tempdir = saved
    return r, json.loads(r.stdout)


def by_name(report: dict) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_every_check_passes_on_a_sound_home(ran):
    r, report = ran
    checks = by_name(report)
    assert [c["name"] for c in report["checks"]] == EXPECTED
    assert r.exit_code == 0, [c for c in report["checks"] if c["status"] == "failed"]
    assert report["passed"] and report["failed"] == []
    skipped = [n for n, c in checks.items() if c["status"] == "skipped"]
    assert skipped == ["tls_versions"]  # plain HTTP on loopback
    assert "HMAC check failed for page" in checks["page_damage_detected"]["detail"]
    assert "fails its authentication tag" in checks["page_damage_detected"]["detail"]
    detail = checks["audit_tail_cut_and_rollback"]["detail"]
    assert detail.count(": detected") == 2
    detail = checks["bundles_refused"]["detail"]
    assert "does not match its SHA-256" in detail and "is not listed in MANIFEST" in detail
    assert "signature does not verify" in detail
    assert "SQLCipher 4." in checks["cipher_settings"]["detail"]
    assert "/proc/self/environ" in checks["key_hygiene"]["detail"]
    assert checks["no_plaintext"]["detail"].startswith("none found: 32 values sampled")


def test_the_report_is_signed_written_and_audited(ran, template):
    _, report = ran
    path = template / selftest.DIR / report["file"]
    on_disk = json.loads(path.read_text())
    assert selftest.report_sha256(on_disk) == report["sha256"]
    assert (path.stat().st_mode & 0o777) == 0o600
    app = Appliance.open({"home": str(template)})
    try:
        events = app.control.audit_find("selftest.report", report["file"])
        assert events[0]["details"]["sha256"] == report["sha256"]
        assert selftest.verify(app, on_disk, ACTOR)["ok"]
        assert selftest.latest(app, ACTOR)["verification"]["sha256"] == report["sha256"]
    finally:
        app.close()
    r = Falaj(template).ok("selftest", "--verify", str(path))
    assert "signature verified, signed by this appliance" in r.stdout


def test_a_changed_or_foreign_report_does_not_verify(ran, template, tmp_path):
    _, report = ran
    original = json.loads((template / selftest.DIR / report["file"]).read_text())
    changed = dict(original, failed=[], passed=True, host="elsewhere")
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    r = Falaj(template)("selftest", "--verify", str(tmp_path / "changed.json"))
    assert r.exit_code == 1 and "signature does not verify" in r.stdout
    foreign_key = Ed25519PrivateKey.generate()
    foreign = dict(original, public_key=foreign_key.public_key().public_bytes_raw().hex())
    foreign["signature"] = foreign_key.sign(selftest.canonical(foreign)).hex()
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    r = Falaj(template)("selftest", "--verify", str(tmp_path / "foreign.json"))
    assert r.exit_code == 1 and "not this appliance's" in r.stdout
    (tmp_path / "junk.json").write_text("{")
    assert Falaj(template)("selftest", "--verify", str(tmp_path / "junk.json")).exit_code == 2


def test_a_report_from_before_a_rekey_still_verifies(ran, template, tmp_path):
    _, report = ran
    home = tmp_path / "home"
    shutil.copytree(template, home)
    Falaj(home).ok("rekey")
    r = Falaj(home).ok("selftest", "--verify", str(home / selftest.DIR / report["file"]))
    assert "recorded in the audit chain" in r.stdout


def probe(home: Path, temp: Path):
    app = Appliance.open({"home": str(home)})
    scratch = home / "tmp" / "probe"
    scratch.mkdir(parents=True)
    return app, selftest.Probe(app, scratch, [temp])


def test_plaintext_left_in_temp_is_found(template, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    pacsv.write_csv(demo.credit_risk(800, seed=11), temp / "export.csv")  # the same rows
    app, p = probe(template, temp)
    try:
        check = selftest.no_plaintext(p)
    finally:
        app.close()
        shutil.rmtree(p.scratch)
    assert check.passed is False and "export.csv" in check.detail


def test_a_role_matrix_that_grants_everything_fails(template, tmp_path, monkeypatch):
    monkeypatch.setattr(selftest, "require", lambda *a, **k: None)
    app, p = probe(template, tmp_path)
    try:
        check = selftest.role_matrix(p)
    finally:
        app.close()
        shutil.rmtree(p.scratch)
    assert check.passed is False and "viewer/" in check.detail


def test_key_material_in_a_log_is_found(template, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(template, home)
    app, p = probe(home, tmp_path)
    try:
        (home / "falaj.log").write_text(f"debug: key={p.master.hex()}\n")
        check = selftest.key_hygiene(p)
    finally:
        app.close()
    assert check.passed is False and "HOME/falaj.log" in check.detail


def test_tls_versions_are_checked_when_tls_is_on(template, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(template, home)
    app = Appliance.open({"home": str(home), "tls": "on"})
    scratch = home / "tmp" / "probe"
    scratch.mkdir(parents=True)
    try:
        check = selftest.tls_versions(selftest.Probe(app, scratch, [tmp_path]))
    finally:
        app.close()
    assert check.passed is True and "1.0 and 1.1 refused" in check.detail


def test_api_runs_it_and_the_page_shows_the_latest(client, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert client.get("/api/v1/selftest/latest").status_code == 404
    r = client.post("/api/v1/selftest")
    assert r.status_code == 200
    report = r.get_json()
    assert [c["name"] for c in report["checks"]] == EXPECTED
    again = client.post("/api/v1/selftest")  # each copies both stores: one a minute
    assert again.status_code == 429 and "ended" in again.get_json()["error"]["message"]
    latest = client.get("/api/v1/selftest/latest").get_json()
    assert latest["verification"]["ok"] and latest["verification"]["sha256"] == report["sha256"]
    page = client.get("/selftest").get_data(as_text=True)
    assert 'id="selftest-checks"' in page and "check-key_hygiene" in page
    assert ("passed" if report["passed"] else "FAILED") in page


@pytest.mark.browser
def test_run_the_selftest_from_its_page(template, tmp_path, start_server, browser, monkeypatch):  # noqa: F811
    home = tmp_path / "home"
    shutil.copytree(template, home, ignore=shutil.ignore_patterns(selftest.DIR))  # no report
    (tmp_path / "temp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "temp"))  # the server's temp folder
    server = start_server(home)
    page = browser.new_page()
    violations = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    login(page, server)
    page.goto(server.url + "/selftest")
    expect(page).to_have_title("Self-test · Falaj")
    expect(page.locator("#selftest-status")).to_contain_text("no self-test has run")
    page.click("#run-selftest", no_wait_after=True)  # it takes a while: wait for the notice
    expect(page.locator("#done")).to_contain_text("self-test passed: report signed",
                                                  timeout=240_000)  # fmt: skip
    rows = page.locator("#selftest-checks tr.check")
    expect(rows).to_have_count(len(EXPECTED))
    expect(page.locator("#check-key_hygiene .status")).to_have_text("passed")
    expect(page.locator("#check-bundles_refused .status")).to_have_text("passed")
    expect(page.locator("#check-tls_versions .status")).to_have_text("skipped")
    expect(page.locator("#selftest-signature")).to_contain_text("signature verified")
    expect(page.locator("#selftest-signature")).to_contain_text("audit chain")
    # styled from style.css under the CSP (no inline styles), nothing refused by it
    color = page.evaluate(
        "getComputedStyle(document.querySelector('#check-key_hygiene .status')).color"
    )
    assert color == "rgb(46, 125, 50)"
    assert violations == []


def test_default_logins_reach_the_password_check_for_every_user(template, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(template, home)
    app = Appliance.open({"home": str(home)})
    try:
        r = app.auth.add_user("alice", "viewer", ACTOR)
        app.auth.enrol(r["enrolment"], "a long and private passphrase")
    finally:
        app.close()
    app, p = probe(home, tmp_path)
    try:
        ok = selftest.no_default_login(p)  # more tries on alice than the rate limit allows
        monkeypatch.setattr(selftest, "DEFAULT_PASSWORDS",
                            (*selftest.DEFAULT_PASSWORDS, "a long and private passphrase"))  # fmt: skip
        found = selftest.no_default_login(p)
    finally:
        app.close()
    assert ok.passed is True and "1 users on the box" in ok.detail
    assert found.passed is False and "alice" in found.detail
