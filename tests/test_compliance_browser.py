"""The Compliance page in a real browser, as a compliance officer: withdraw a subject's
consent, export everything held about them (a JSON download, personal columns
decrypted), object to a decision about them and decide the review."""

import json

import pytest

from appliance import demo
from appliance.core import Appliance
from tests.conftest import ACTOR, FEATURES
from tests.test_browser import browser, login  # noqa: F401 -- the module's Chromium

pytestmark = pytest.mark.browser


def test_the_compliance_page(home, start_server, browser):  # noqa: F811
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    (home / "falaj.yaml").write_text(demo.WORKSPACE)
    app.views.apply(home / "falaj.yaml", ACTOR)
    data = demo.credit_risk(600, seed=4)
    app.ingestion.ingest(data, "credit_applications", actor=ACTOR)
    contacts = demo.contacts(data)
    app.ingestion.ingest(contacts, "credit_contacts", actor=ACTOR)
    app.training.train("credit_applications", "default", "credit", ACTOR,
                       features=tuple(FEATURES))  # fmt: skip
    app.serving.deploy("credit", 1, ACTOR)
    row = data.to_pylist()[0]
    subject = str(row["customer_id"])
    decision = app.serving.predict("credit", [{f: row[f] for f in FEATURES}], ACTOR,
                                   key=subject)["request_id"]  # fmt: skip
    app.close()
    server = start_server(home)

    page = browser.new_page()
    login(page, server, "compliance-officer")
    page.click("#nav-compliance")
    page.wait_for_url(server.url + "/compliance")
    # withdraw consent for automated decisions
    page.fill("#consent-subject", subject)
    page.fill("#consent-purpose", "automated-decision")
    page.click("#consent-withdraw")
    page.wait_for_load_state()
    assert "consent withdrawn" in page.locator("#done").inner_text()
    assert "automated-decision withdrawn" in page.locator("#overview").inner_text()
    # export: a download of one JSON document, personal columns decrypted
    with page.expect_download() as info:
        page.click("#export")
    doc = json.loads(info.value.path().read_text())
    assert doc["subject"] == subject
    mine = next(c for c in contacts.to_pylist() if str(c["customer_id"]) == subject)
    assert doc["tables"]["credit_contacts"]["rows"][0]["email"] == mine["email"]
    assert decision in {d["request_id"] for d in doc["decisions"]}
    # object to the decision from the subject's lookup, then decide the review
    page.goto(server.url + f"/compliance?subject={subject}")
    line = page.locator(f'#subject-decisions tr[data-request="{decision}"]')
    line.locator("input.reason").fill("my income was misread")
    line.locator("button.object").click()
    page.wait_for_load_state()
    assert "review" in page.locator("#done").inner_text()
    review = page.locator("#reviews-table tr.review-open").first
    assert decision in review.inner_text() and "my income was misread" in review.inner_text()
    review.locator("input.note").fill("income re-checked: the refusal stands")
    review.locator("button.uphold").click()
    page.wait_for_load_state()
    assert "upheld" in page.locator("#done").inner_text()
    decided = page.locator("#reviews-table tr.review-upheld").first
    assert "income re-checked" in decided.inner_text()
    assert "export" in page.locator("#requests-table").inner_text()
