"""The Operations page in a real browser: take a backup from the page and see it listed
with its signature verified, then download it."""

import json
import tarfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from appliance import keys
from appliance.ops import backup as backups
from tests.conftest import Falaj
from tests.test_browser import browser  # noqa: F401

pytestmark = pytest.mark.browser
FIXTURE = Path(__file__).parent / "fixtures" / "home-0.1.0"


def test_take_a_backup_from_the_operations_page(tmp_path, start_server, browser):  # noqa: F811
    with tarfile.open(FIXTURE / "home.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    Falaj(home).ok("check")  # migrated (its pre-upgrade backup is the first listed)
    server = start_server(home)
    context = browser.new_context(extra_http_headers=server.headers(), accept_downloads=True)
    page = context.new_page()
    page.goto(server.url + "/operations")
    expect(page).to_have_title("Operations · Falaj")
    rows = page.locator("#backup-table tr.backup")
    expect(rows).to_have_count(1)  # the upgrade's
    page.click("#take-backup-button")
    expect(page.locator("#done")).to_contain_text("backup backup-")
    expect(rows).to_have_count(2)
    newest = rows.first
    name = newest.get_attribute("data-name")
    assert name.startswith("backup-") and name.endswith(backups.SUFFIX)
    expect(newest.locator(".signature")).to_have_text("verified")
    expect(newest).to_contain_text("credit@1")
    expect(newest).to_contain_text("loans 300")
    with page.expect_download() as got:
        newest.locator("a.download").click()
    saved = tmp_path / "downloaded.falaj-backup"
    got.value.save_as(saved)
    assert saved.read_bytes() == (home / "backups" / name).read_bytes()
    m = backups.verify(saved, keys.read_key(home / "keys" / "master.key"))
    assert m["models"] == {"credit": [1]}
    assert json.loads(Falaj(home).ok("backups", "list", "--json").stdout)[0]["name"] == name
    context.close()
