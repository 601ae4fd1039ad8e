"""The dashboard in a real browser (Debian's Chromium driven by Playwright)."""

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromium"):
        # CI (FALAJ_REQUIRE_BROWSER=1, set by .ci/run) must fail, not skip, without a browser
        missing = "chromium is not installed (apt-get install chromium; .ci/run does this)"
        if os.environ.get("FALAJ_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield b
        b.close()


def test_dashboard_shows_the_demo_model_serving(home, start_server, browser, monkeypatch, tmp_path):
    monkeypatch.setenv("FALAJ_DEMO_ROWS", "5000")
    server = start_server(home, "--demo")
    server.request(
        "POST", "/api/v1/models/credit_risk/predict", {"records": [{"age": 1}]}
    )  # a 400, not logged
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server.url + "/")
    assert page.title() == "Falaj"
    status = page.locator("#audit-status")
    assert "verified" in status.inner_text()
    row = page.locator("#deployments tbody tr").first
    assert "credit_risk" in row.inner_text() and "v1" in row.inner_text()
    assert page.locator("#deployments .slot").first.inner_text() == "blue"
    models = page.locator("#models tbody tr")
    assert models.count() == 1 and "passed" in models.first.inner_text()
    assert "credit_applications" in page.locator("#tables").inner_text()
    assert "5,000" in page.locator("#tables").inner_text()
    assert page.locator("#audit tbody tr").count() >= 4
    # the stylesheet loaded from the package itself
    assert (
        page.evaluate("getComputedStyle(document.querySelector('.top')).backgroundColor")
        == "rgb(27, 110, 115)"
    )
    assert all(u.startswith(server.url) for u in requests), requests  # nothing from the internet
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # a decision: answered over the API, then found and proved from the dashboard
    record = {"age": 35, "income": 14000, "employment_years": 4, "loan_amount": 60000,
              "debt_to_income": 0.3, "credit_utilization": 0.4, "num_credit_lines": 4,
              "num_late_payments": 0}  # fmt: skip
    status, answer = server.request(
        "POST", "/api/v1/models/credit_risk/predict", {"records": [record, record]}
    )
    assert status == 200
    page.goto(server.url + "/")
    recent = page.locator("#recent tbody tr").first
    assert answer["request_id"] in recent.inner_text() and "2" in recent.inner_text()
    page.fill("#decision-id", answer["request_id"])
    page.click("#decisions button")
    found = page.locator("#decision").inner_text()
    assert "proved" in found and "NOT" not in found and "credit_risk v1" in found
    assert f"{answer['predictions'][0]:.6f}" in found
    page.fill("#decision-id", "no-such-request")
    page.click("#decisions button")
    assert (
        "no decision with request id 'no-such-request'"
        in page.locator("#decision-missing").inner_text()
    )

    # the store check, from the footer link
    page.click("#check-link")
    assert page.locator("#check-result").inner_text() == "Both stores read clean."

    page.goto(server.url + "/no/such/page")
    assert page.locator("h1").inner_text() == "Error 404"
    page.close()
