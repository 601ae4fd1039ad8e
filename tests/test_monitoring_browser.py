"""The Monitoring page in a real browser: a served model's drift after a pass, its chart,
and an alert acknowledged with the page's button."""

import pyarrow.csv as pacsv
import pytest

from tests.conftest import FEATURES, LOANS, TRAIN
from tests.test_browser import browser, login  # noqa: F401 -- the module's Chromium

pytestmark = pytest.mark.browser


def test_the_monitoring_page(home, falaj, credit_csv, start_server, browser):  # noqa: F811
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, *LOANS)
    falaj.ok(*TRAIN)
    falaj.ok("deploy", "credit", "--version", "1")
    falaj.ok("monitor", "config", "credit", "--min-rows", "100")
    server = start_server(home)
    rows = pacsv.read_csv(credit_csv).to_pylist()[:300]
    for i in range(0, 300, 100):
        records = [{f: r[f] * (3.0 if f == "income" else 1.0) for f in FEATURES}
                   for r in rows[i : i + 100]]  # fmt: skip
        status, _ = server.request("POST", "/api/v1/models/credit/predict", {"records": records})
        assert status == 200
    status, r = server.request(
        "POST", "/api/v1/monitoring/run", {"model": "credit", "window": "1h"}
    )
    assert status == 200 and r["models"]["credit"][0]["requests"] == 300

    page = browser.new_page()
    login(page, server)
    page.goto(server.url + "/monitoring")
    card = page.locator("#monitor-credit")
    assert card.locator("table.drift tbody tr").count() == len(FEATURES)
    income = card.locator('tr.feature[data-feature="income"]')
    assert "drifted" in income.get_attribute("class")
    assert float(income.locator("td.psi").inner_text()) > 0.2
    assert card.locator("svg.psi-history polyline").count() >= 2  # prediction + inputs
    assert card.locator("tr.snapshot td.requests").first.inner_text() == "300"
    row = card.locator('tr.alert-row:has-text("income")')
    assert "open" in row.inner_text()
    row.locator("button.ack").click()
    page.wait_for_load_state()
    assert "acknowledged" in page.locator("#done").inner_text()
    assert "acknowledged" in page.locator('tr.alert-row:has-text("income") td.status').inner_text()
