"""The registry over HTTP: model references, aliases and training runs."""

from tests.conftest import ACTOR


def test_references_aliases_and_runs_over_http(client, trained):
    r = client.get("/api/v1/models/resolve", query_string={"ref": "models:/credit/1"})
    assert r.status_code == 200 and (r.get_json()["name"], r.get_json()["version"]) == ("credit", 1)
    assert r.get_json()["status"] == "ready" and r.get_json()["aliases"] == []

    r = client.put("/api/v1/models/credit/aliases/champion", json={"version": 1})
    assert r.status_code == 200 and r.get_json()["previous_version"] is None
    for ref in ("models:/credit@champion", "credit@champion", "credit@1", "credit"):
        r = client.get("/api/v1/models/resolve", query_string={"ref": ref})
        assert r.status_code == 200 and r.get_json()["version"] == 1, ref
        assert r.get_json()["aliases"] == ["champion"]
    event = trained.audit.tail(1, ACTOR)[0]
    assert (event["action"], event["subject"]) == ("model.alias", "credit@champion")

    bad = [
        (client.put("/api/v1/models/credit/aliases/champion", json={"version": "1"}), 400,
         'field "version" must be a positive integer'),
        (client.put("/api/v1/models/credit/aliases/champion", json={"version": 9}), 404,
         "model 'credit' has no version 9"),
        (client.put("/api/v1/models/credit/aliases/latest", json={"version": 1}), 400,
         "alias 'latest' is reserved"),
        (client.put("/api/v1/models/ghost/aliases/x", json={"version": 1}), 404,
         "model 'ghost' is not registered"),
        (client.get("/api/v1/models/resolve", query_string={"ref": "credit@nope"}), 404,
         "model 'credit' has no alias 'nope' (aliases: champion)"),
        (client.get("/api/v1/models/resolve", query_string={"ref": "models:/credit/x"}), 400,
         "the version after '/' must be a number"),
        (client.get("/api/v1/models/resolve"), 400, '"ref" is missing'),
    ]  # fmt: skip
    for resp, status, message in bad:
        assert resp.status_code == status, resp.get_json()
        assert message in resp.get_json()["error"]["message"]

    r = client.delete("/api/v1/models/credit/aliases/champion")
    assert r.status_code == 200 and r.get_json()["previous_version"] == 1
    assert client.delete("/api/v1/models/credit/aliases/champion").status_code == 404

    runs = client.get("/api/v1/runs", query_string={"model": "credit"}).get_json()["runs"]
    assert [(x["kind"], x["status"], x["version"]) for x in runs] == [("final", "registered", 1)]
    assert client.get("/api/v1/runs", query_string={"model": "ghost"}).get_json() == {"runs": []}


SPECS = """\
training:
  numeric:
    table: loans
    label: default
    model: credit
    features: [age, income, debt_to_income, num_late_payments]
    gates: {champion: null}   # fewer inputs than the live credit@1: not a challenger
  strict:
    table: loans
    label: default
    model: credit
    gates: {champion: null, calibration: {ece: 0.0}}
"""


def test_the_runs_page_trains_a_workspace_spec(client, trained):
    page = client.get("/runs").get_data(as_text=True)
    assert "No training specs in the workspace file" in page
    (trained.home / "falaj.yaml").write_text(SPECS)
    page = client.get("/runs").get_data(as_text=True)
    assert '<option value="numeric">numeric (linear → credit)</option>' in page

    r = client.post("/runs/train", data={"spec": "numeric"})
    assert r.status_code == 302 and "/models/credit/2?" in r.headers["Location"]
    shown = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "trained credit@2 from spec numeric: gates passed" in shown
    assert trained.registry.version("credit", 2, ACTOR)["features"] == [
        "age", "income", "debt_to_income", "num_late_payments"]  # fmt: skip

    r = client.post("/runs/train", data={"spec": "strict"})
    shown = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "trained credit@3 from spec strict: rejected by its gates (calibration)" in shown
    assert trained.registry.version("credit", 3, ACTOR)["status"] == "rejected"

    r = client.post("/runs/train", data={"spec": "nope"})
    assert r.status_code == 302 and "/runs?" in r.headers["Location"]
    shown = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "no training spec &#39;nope&#39; (specs: numeric, strict)" in shown
    (trained.home / "falaj.yaml").write_text("training: {x: {label: y}}\n")
    assert "The workspace file does not read" in client.get("/runs").get_data(as_text=True)
