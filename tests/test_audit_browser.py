"""The Audit page in a real browser: the chain's state, a checkpoint written with the
page's button, and a receipt pasted into the lookup form, pending until a checkpoint
covers it, then shown with its proof verified."""

import pytest

from tests.conftest import FEATURES, LOANS, RECORD, TRAIN
from tests.test_browser import browser, login  # noqa: F401 -- the module's Chromium

pytestmark = pytest.mark.browser


def test_the_audit_page(home, falaj, credit_csv, start_server, browser):  # noqa: F811
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, *LOANS)
    falaj.ok(*TRAIN)
    falaj.ok("deploy", "credit", "--version", "1")
    server = start_server(home)
    status, answer = server.request("POST", "/api/v1/models/credit/predict",
                                    {"records": [RECORD, dict.fromkeys(FEATURES, 2.0)]})  # fmt: skip
    assert status == 200
    receipt = answer["receipt"]

    page = browser.new_page()
    login(page, server, "compliance-officer")
    page.goto(server.url + "/audit")
    assert "verified" in page.locator("#chain-status").inner_text()
    assert page.locator("#no-checkpoints").count() == 1

    page.fill("#receipt", receipt)
    page.click("#prove")
    page.wait_for_load_state()
    assert "not in a signed checkpoint yet" in page.locator("#proof-problem").inner_text()
    assert page.locator("#proof").count() == 0

    page.click("#write-checkpoint")
    page.wait_for_load_state()
    assert page.locator("#done").inner_text().startswith("checkpoint 1 signed: ")
    rows = page.locator("#checkpoint-table tr.checkpoint")
    assert rows.count() == 1
    size = int(rows.first.locator("td.size").inner_text())
    assert size >= 5  # init, ingest, train, deploy, the batch, the token...
    assert f"matches signed checkpoint {size}" in page.locator("#chain-status").inner_text()

    page.fill("#receipt", receipt)
    page.click("#prove")
    page.wait_for_load_state()
    status = page.locator("#proof-status").inner_text()
    assert status.startswith("verified") and receipt in status and "(2 decisions)" in status
    assert page.locator("#proof tr.decision").count() == 2
    assert f"root of checkpoint {size}" in page.locator("#proof").inner_text()

    page.click("#write-checkpoint")  # a second one: consistent with the first
    page.wait_for_load_state()
    assert page.locator("#checkpoint-table tr.checkpoint").count() == 2
    consistency = page.locator("#consistency").inner_text()
    assert f"extends checkpoint {size}" in consistency and consistency.endswith(": verified")

    page.fill("#receipt", "not-a-receipt")
    page.click("#prove")
    page.wait_for_load_state()
    assert "expected the 32 hex digits" in page.locator("#proof-problem").inner_text()
