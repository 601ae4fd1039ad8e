"""The dashboard's model pages: the SVG charts and the model card on their own, then
/models, a version's page, its alias form and card, and /runs over a trained home."""

import copy
import math
import re
import xml.etree.ElementTree as ET

import pytest

from appliance.registry import card
from webui import charts

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&'


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML: every label escaped
    assert root.tag == SVG + "svg" and root.get("role") == "img"
    return root


def marks(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if e.get("class") == cls]


def title(e: ET.Element) -> str:
    return e.find(SVG + "title").text


# -- charts ------------------------------------------------------------------------------


def test_grouped_bars_put_each_value_at_its_height_and_escape_groups():
    svg = charts.grouped_bars(
        ["F", HOSTILE],
        {"selection rate": [0.5, 0.25], "TPR": [1.0, None], "FPR": [0.0, float("nan")]},
        title=f"Fairness across {HOSTILE}",
        y_lo=0.0,
        y_hi=1.0,
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = parse(svg)
    assert root.get("aria-label") == f"Fairness across {HOSTILE}"
    assert root.find(SVG + "title").text == f"Fairness across {HOSTILE}"
    bars = {title(b): b for b in marks(root, "rect", "bar")}
    assert set(bars) == {
        "F · selection rate: 0.5", "F · TPR: 1", "F · FPR: 0",
        f"{HOSTILE} · selection rate: 0.25",
    }  # fmt: skip
    axis = charts.TOP + charts.Frame.height  # y of the value 0
    for name, value in [("F · selection rate: 0.5", 0.5), ("F · TPR: 1", 1.0),
                        (f"{HOSTILE} · selection rate: 0.25", 0.25)]:  # fmt: skip
        b = bars[name]
        assert float(b.get("y")) + float(b.get("height")) == pytest.approx(axis, abs=0.01)
        assert float(b.get("height")) == pytest.approx(value * charts.Frame.height, abs=0.01)
    assert float(bars["F · FPR: 0"].get("height")) == 0
    # the second group's bars sit in the right half, in series order
    second = float(bars[f"{HOSTILE} · selection rate: 0.25"].get("x"))
    assert second > charts.LEFT + charts.Frame.width / 2 > float(bars["F · TPR: 1"].get("x"))
    missing = [title(t) for t in marks(root, "text", "na")]
    assert missing == [f"{HOSTILE} · TPR: n/a", f"{HOSTILE} · FPR: n/a"]
    labels = [t.text for t in marks(root, "text", "group")]
    assert labels == ["F", HOSTILE[: charts.MAX_LABEL - 1] + "…"]


def test_grouped_bars_refuse_series_of_the_wrong_length():
    with pytest.raises(ValueError, match="series 'TPR' has 1 values for 2 groups"):
        charts.grouped_bars(["a", "b"], {"TPR": [0.1]}, title="t")


def test_reliability_diagram_points_and_diagonal():
    bins = [
        {"bin": 0, "lo": 0.0, "hi": 0.5, "count": 10, "mean_predicted": 0.2, "observed_rate": 0.3},
        {"bin": 1, "lo": 0.5, "hi": 1.0, "count": 0, "mean_predicted": None, "observed_rate": None},
        {"bin": 2, "lo": 0.5, "hi": 1.0, "count": 5, "mean_predicted": 0.8, "observed_rate": 0.6},
    ]
    root = parse(charts.reliability(bins, title="Calibration"))
    f = charts.Frame()
    points = [(float(c.get("cx")), float(c.get("cy"))) for c in marks(root, "circle", "point")]
    expected = [(f.left + 0.2 * f.width, f.top + 0.7 * f.height),
                (f.left + 0.8 * f.width, f.top + 0.4 * f.height)]  # fmt: skip
    assert points == [pytest.approx(p, abs=0.01) for p in expected]
    (d,) = marks(root, "line", "diagonal")
    assert (float(d.get("x1")), float(d.get("y1"))) == (f.left, f.top + f.height)
    assert (float(d.get("x2")), float(d.get("y2"))) == (f.left + f.width, f.top)
    assert "10 rows" in title(marks(root, "circle", "point")[0])


def test_trial_scores_mark_each_trial_and_the_best_so_far():
    root = parse(charts.trial_scores([0.6, 0.8, None, 0.7], title="Search", metric="roc_auc"))
    points = marks(root, "circle", "point")
    assert [title(p) for p in points] == ["trial 1: roc_auc 0.6", "trial 2: roc_auc 0.8",
                                          "trial 4: roc_auc 0.7"]  # fmt: skip
    cy = [float(p.get("cy")) for p in points]
    assert cy[1] < cy[2] < cy[0]  # higher scores sit higher
    cx = [float(p.get("cx")) for p in points]
    assert cx[1] - cx[0] == pytest.approx((cx[2] - cx[1]) / 2)  # trial 3 keeps its place
    (best,) = marks(root, "polyline", "best")
    ys = [float(xy.split(",")[1]) for xy in best.get("points").split()]
    assert ys[0] == cy[0] and ys[-1] == cy[1] and min(ys) == cy[1]  # never worse than before
    # lower is better: the best line follows the minimum
    root = parse(charts.trial_scores([0.5, 0.3, 0.4], title="t", metric="rmse",
                                     higher_is_better=False))  # fmt: skip
    ys = [
        float(xy.split(",")[1]) for xy in marks(root, "polyline", "best")[0].get("points").split()
    ]
    assert ys[-1] == max(ys)  # 0.3, the lowest value, drawn lowest
    assert parse(charts.trial_scores([], title="none yet", metric="roc_auc")) is not None
    root = parse(charts.trial_scores([0.5, 0.6], title="t", metric="m", first=0))
    assert [title(p) for p in marks(root, "circle", "point")] == [
        "trial 0: m 0.5",
        "trial 1: m 0.6",
    ]


def test_an_axis_left_to_the_data_ends_on_a_round_number():
    root = parse(charts.grouped_bars(["a", "b"], {"rate": [0.0712, 0.03]}, title="t"))
    ticks = [t.text for t in root.iter(SVG + "text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0" and ticks[-1] == "0.08"
    (high,) = [b for b in marks(root, "rect", "bar") if title(b) == "a · rate: 0.0712"]
    assert float(high.get("height")) == pytest.approx(0.0712 / 0.08 * charts.Frame.height, abs=0.01)


def test_bars_compare_values_including_negative_ones():
    root = parse(charts.bars([("model", 0.2), ("baseline", 0.5), (HOSTILE, -0.1)], title="R²"))
    rects = {title(b): b for b in marks(root, "rect", "bar")}
    f = charts.Frame(-0.1, 0.5)
    zero = f.y(0)
    assert float(rects["model: 0.2"].get("y")) == pytest.approx(f.y(0.2), abs=0.01)
    assert float(rects["model: 0.2"].get("height")) == pytest.approx(zero - f.y(0.2), abs=0.01)
    neg = rects[f"{HOSTILE}: -0.1"]
    assert float(neg.get("y")) == pytest.approx(zero, abs=0.01)
    assert float(neg.get("height")) == pytest.approx(f.y(-0.1) - zero, abs=0.01)
    assert [t.text for t in marks(root, "text", "value")] == ["0.2", "0.5", "-0.1"]


# -- the model card ----------------------------------------------------------------------

INFO = {
    "name": "credit", "version": 3, "status": "rejected",
    "created_at": "2026-11-30T05:00:00Z", "created_by": "user:ana",
    "aliases": ["challenger"], "intended_use": "Pre-screen loan applications | for review",
    "family": "gbt", "task": "binary", "params": {"num_leaves": 31, "learning_rate": 0.1},
    "inputs": [{"name": "income", "role": "numeric", "type": "double"},
               {"name": "region", "role": "categorical", "type": "string"}],
    "sensitive": "gender",
    "lineage": {"table": "loans", "table_fingerprints": {"loans": "ab12cd"}, "rows": 3000,
                "time_range": ["2024-01-01", "2024-06-30"], "code_version": "0.8.0",
                "seed": 7, "device": "cpu"},
    "metrics": {
        "task": "binary",
        "holdout": {"rows": 600, "roc_auc": 0.81234, "pr_auc": 0.5, "log_loss": 0.4,
                    "brier": 0.13, "accuracy": 0.8, "f1": 0.55, "threshold": 0.5, "ece": 0.031,
                    "calibration": [{"bin": 0, "lo": 0.0, "hi": 0.1, "count": 300,
                                     "mean_predicted": 0.05, "observed_rate": 0.04}]},
        "train": {"rows": 2400, "roc_auc": 0.85, "log_loss": 0.35},
        "baseline": {"kind": "training prior", "roc_auc": 0.5, "log_loss": 0.6},
        "champion": {"version": 2, "holdout": {"roc_auc": 0.8, "log_loss": 0.41}},
        "fairness": {"sensitive": "gender", "demographic_parity_difference": 0.12,
                     "equalized_odds_difference": 0.2,
                     "groups": [{"group": "F", "count": 300, "selection_rate": 0.2, "tpr": 0.6,
                                 "fpr": 0.1, "roc_auc": 0.8},
                                {"group": HOSTILE, "count": 3, "selection_rate": 0.0,
                                 "tpr": None, "fpr": 0.0, "roc_auc": None}]},
        "robustness": {"noise": {"mean_abs_change": 0.01, "max_abs_change": 0.05,
                                 "flip_rate": 0.002}},
        "gates": {"passed": False, "results": [
            {"gate": "baseline", "metric": "log_loss", "value": 0.4, "threshold": 0.6,
             "op": "<=", "passed": True, "detail": "beats the training prior by 0.2"},
            {"gate": "demographic_parity", "metric": "demographic_parity_difference",
             "value": 0.12, "threshold": 0.1, "op": "<=", "passed": False, "detail": ""}]},
    },
}  # fmt: skip


def test_card_markdown_has_every_section_and_value():
    md = card.markdown(INFO)
    assert md.startswith("# Model card: credit v3\n")
    for heading in ["Intended use", "Model details", "Data", "Inputs", "Metrics", "Gates",
                    "Fairness", "Calibration", "Robustness"]:  # fmt: skip
        assert f"\n## {heading}\n" in md
    assert "Pre-screen loan applications \\| for review" in md  # a | cannot break a table
    assert "| Status | rejected |" in md and "| Family | gbt |" in md
    assert '| Parameters | {"learning\\_rate": 0.1, "num\\_leaves": 31} |' in md
    assert "| Seed | 7 |" in md and "| Device | cpu |" in md
    assert "| Aliases | challenger |" in md
    assert "| table fingerprints | loans: ab12cd |" in md
    assert "| time range | 2024-01-01, 2024-06-30 |" in md and "| code version | 0.8.0 |" in md
    assert "| income | numeric | double |" in md
    assert "Sensitive attribute: gender. It is not a model input" in md
    assert "| Metric | hold-out | train | baseline (training prior) | champion v2 |" in md
    assert "| ROC AUC | 0.8123 | 0.8500 | 0.5000 | 0.8000 |" in md
    assert "| PR AUC | 0.5000 | — | — | — |" in md
    assert ("| demographic\\_parity | demographic\\_parity\\_difference | 0.1200 | ≤ 0.1000 "
            "| FAIL |") in md  # fmt: skip
    assert "At least one gate failed" in md
    assert "| F | 300 | 0.2000 | 0.6000 | 0.1000 | 0.8000 |" in md
    assert "<script>" not in md and '&lt;script&gt;alert("x")&lt;/script&gt;&amp; |' in md
    assert "| 0 | 0.0000 – 0.1000 | 300 | 0.0500 | 0.0400 |" in md
    assert "Expected calibration error: 0.0310." in md


def test_card_html_is_a_standalone_escaped_document():
    page = card.html(INFO)
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "<style>" in page and "<link" not in page and "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert "<td>ROC AUC</td><td>0.8123</td><td>0.8500</td>" in page
    assert '<td class="fail">FAIL</td>' in page and '<td class="pass">pass</td>' in page
    assert 'class="status-rejected">(rejected)</span>' in page
    for sid in ["intended-use", "details", "data", "inputs", "metrics", "gates", "fairness",
                "calibration"]:  # fmt: skip
        assert f'<section id="{sid}">' in page


def test_card_renders_what_a_bundle_lacks():
    """Regression metrics, no fairness, an older bundle's boolean gates, no lineage."""
    info = copy.deepcopy(INFO) | {"task": "regression", "sensitive": None, "lineage": {},
                                  "intended_use": None, "aliases": [], "params": {}}  # fmt: skip
    info["metrics"] = {
        "holdout": {"rows": 100, "rmse": 1.5, "mae": 1.0, "r2": math.nan},
        "gates": {"beats_baseline_log_loss": True, "roc_auc_above_chance": False,
                  "passed": False},
    }  # fmt: skip
    md = card.markdown(info)
    assert "| Metric | hold-out |" in md and "| RMSE | 1.5000 |" in md and "| R² | n/a |" in md
    assert "ROC AUC" not in md
    assert "| roc\\_auc\\_above\\_chance | — | — | — | FAIL | — |" in md
    assert "Not measured: no sensitive attribute." in md
    assert "None: not applicable to regression." in md
    assert "No lineage recorded." in md and "| Aliases | — |" in md
    assert "Not stated." in md
    page = card.html(info)
    assert "Not measured: no sensitive attribute." in page
    bare = {"name": "m", "version": 1}
    assert "No metrics recorded." in card.markdown(bare)
    assert "No gates were evaluated." in card.html(bare)


def test_card_gives_the_event_time_range_in_utc():
    lineage = {"event_time_from_us": 1704067200000000, "event_time_to_us": 1706745600000000}
    md = card.markdown({"name": "m", "version": 1, "lineage": lineage})
    assert "| time range | 2024-01-01T00:00:00+00:00 to 2024-02-01T00:00:00+00:00 |" in md
    assert "event\\_time" not in md


# -- the pages, over a home with a trained model ---------------------------------------


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory):
    """credit@1 (a 3-trial search, fairness across gender, live) and credit@2 (rejected:
    fairness thresholds of 0), with the Flask test client over them."""
    import pyarrow.csv as pacsv

    from appliance import demo
    from appliance.core import Appliance
    from appliance.training.specs import Search
    from tests.conftest import ACTOR, admin_client

    base = tmp_path_factory.mktemp("models")
    pacsv.write_csv(demo.credit_risk(3000, seed=3), base / "credit.csv")
    app = Appliance.open({"home": str(base / "home")})
    app.init(ACTOR)
    app.ingestion.ingest(base / "credit.csv", "loans", "customer_id", "event_time", ACTOR)
    first = app.training.train("loans", "default", "credit", ACTOR, sensitive="gender",
                               search=Search(strategy="random", trials=3),
                               intended_use="Pre-screen <b>loans</b> for review")  # fmt: skip
    second = app.training.train("loans", "default", "credit", ACTOR, sensitive="gender",
                                gates={"fairness": {"demographic_parity": 0.0,
                                                    "equalized_odds": 0.0}})  # fmt: skip
    assert (first["status"], second["status"]) == ("ready", "rejected")
    app.serving.deploy("credit", 1, ACTOR)
    client = admin_client(app)
    yield app, client, first, second
    app.close()


def section(page: str, sid: str) -> str:
    """The HTML of the page's <section id=sid> (sections do not nest)."""
    start = page.index(">", page.index(f'id="{sid}"')) + 1
    return page[start : page.index("</section>", start)]


def text(fragment: str) -> str:
    """What a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    from html import unescape

    return " ".join(unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def get(client, path: str, status: int = 200) -> str:
    r = client.get(path)
    assert r.status_code == status, r.data[:2000]
    return r.data.decode()


def test_models_page_lists_each_version_with_status_gates_and_score(trained_home):
    app, client, first, second = trained_home
    page = get(client, "/models")
    assert 'id="nav-models"' in page and 'data-model="credit"' in page
    rows = [text(r) for r in re.findall(r'<tr class="version.*?</tr>', page, re.S)]
    assert len(rows) == 2 and rows[0].startswith("v2") and rows[1].startswith("v1 live")
    auc2, auc1 = (r["metrics"]["holdout"]["roc_auc"] for r in (second, first))
    n = len(second["metrics"]["gates"]["results"])
    assert f"rejected — failed {n - 2}/{n}; failed: demographic_parity, equalized_odds" in rows[0]
    assert f"ROC AUC {auc2:.4f}" in rows[0]
    assert f"ready — passed {n}/{n}" in rows[1] and f"ROC AUC {auc1:.4f}" in rows[1]


def test_version_page_shows_gates_fairness_calibration_and_lineage(trained_home):
    app, client, first, _ = trained_home
    page = get(client, "/models/credit/1")
    m = first["metrics"]
    head = text(section(page, "version"))
    n = len(m["gates"]["results"])
    assert head.startswith("credit v1 ready live") and f"Gates: passed ({n} of {n})" in head
    gates = text(section(page, "gates"))
    for g in m["gates"]["results"]:
        assert f"{g['gate']} {g['metric']} {card.cell(g['value'])}" in gates
    assert len(re.findall(r'<td class="ok">pass</td>', section(page, "gates"))) == n
    assert "FAIL" not in gates
    fairness = section(page, "fairness")
    chart = fairness[fairness.index("<svg") : fairness.index("</svg>") + 6]
    root = parse(chart)
    assert "per group of gender" in root.get("aria-label")
    female = next(g for g in m["fairness"]["groups"] if g["group"] == "female")
    bars = {title(b): float(b.get("height")) for b in marks(root, "rect", "bar")}
    male = next(g for g in m["fairness"]["groups"] if g["group"] == "male")
    f_bar, m_bar = (bars[f"{g['group']} · TPR: {g['tpr']:.3g}"] for g in (female, male))
    assert f_bar / m_bar == pytest.approx(female["tpr"] / male["tpr"], rel=1e-3)
    row = " ".join(card.cell(female[k]) for k in ("count", "selection_rate", "tpr", "fpr"))
    assert f"female {row}" in text(fairness)
    dpd = card.cell(m["fairness"]["demographic_parity_difference"])
    assert f"demographic parity difference {dpd}" in text(fairness)
    calibration = section(page, "calibration")
    points = marks(parse(calibration[calibration.index("<svg") : calibration.index("</svg>") + 6]),
                   "circle", "point")  # fmt: skip
    bins = [b for b in m["holdout"]["calibration"] if b["count"]]
    assert len(points) == len(bins)
    assert f"Expected calibration error: {card.cell(m['holdout']['ece'])}" in text(calibration)
    noise = m["robustness"]["noise"]["mean_abs_change"]
    assert f"noise {card.cell(noise)}" in text(section(page, "robustness"))
    data = text(section(page, "data"))
    assert "source table loans" in data and "rows 3000" in data and "code version falaj" in data
    assert re.search(r"time range \d{4}-\d\d-\d\dT[\d:]+\+00:00 to \d{4}", data)
    inputs = text(section(page, "inputs"))
    assert "loan_purpose categorical string" in inputs and "income numeric double" in inputs
    assert "Sensitive attribute: gender. It is not a model input" in inputs
    assert "gender categorical" not in inputs
    assert "Pre-screen &lt;b&gt;loans&lt;/b&gt; for review" in section(page, "intended-use")
    metrics = text(section(page, "metrics"))
    assert f"ROC AUC {card.cell(m['holdout']['roc_auc'])}" in metrics
    assert 'href="/models/credit/1/card"' in page and 'href="/models/credit/1/card.md"' in page


def test_a_rejected_version_shows_the_gates_it_failed(trained_home):
    _, client, _, second = trained_home
    page = get(client, "/models/credit/2")
    assert text(section(page, "version")).startswith("credit v2 rejected")
    assert "deploying it needs --force" in text(section(page, "version"))
    gates = text(section(page, "gates"))
    value = card.cell(second["metrics"]["fairness"]["demographic_parity_difference"])
    assert f"demographic_parity demographic_parity_difference {value} ≤ 0.0000 FAIL" in gates
    assert "At least one gate failed: rejected." in gates
    auc = card.cell(second["metrics"]["holdout"]["roc_auc"])
    assert f"champion roc_auc {auc} — pass no champion yet" in gates  # no threshold to beat


def test_the_model_card_as_html_and_markdown(trained_home):
    app, client, _, _ = trained_home
    from tests.conftest import ACTOR

    r = client.get("/models/credit/1/card")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.data.decode()
    assert page.startswith("<!doctype html>") and "<title>Model card: credit v1</title>" in page
    assert "female" in text(section(page, "fairness")) and "<link" not in page
    r = client.get("/models/credit/2/card.md")
    assert r.status_code == 200 and r.mimetype == "text/markdown"
    assert r.headers["Content-Disposition"] == 'attachment; filename="credit-v2-card.md"'
    md = r.data.decode()
    assert md == card.markdown(app.registry.card_info("credit", 2, ACTOR))
    assert md.startswith("# Model card: credit v2\n") and "| Status | rejected |" in md


@pytest.mark.parametrize("path", ["/models/credit/9", "/models/nope/1", "/models/credit/9/card",
                                  "/models/credit/9/card.md", "/runs/nope",
                                  "/runs?compare=nope"])  # fmt: skip
def test_unknown_models_versions_and_runs_are_the_404_page(trained_home, path):
    page = get(trained_home[1], path, 404)
    assert "Error 404" in page
    found = r"model 'nope' is not registered|no version 9|no run 'nope'"
    assert re.search(found, text(section(page, "error-message")))


def test_runs_page_lists_fits_and_searches_and_compares_them(trained_home):
    app, client, first, second = trained_home
    page = get(client, "/runs")
    rows = [text(r) for r in re.findall(r'<tr class="run">.*?</tr>', page, re.S)]
    assert len(rows) == 3  # two final fits and one search; its trials are on its page
    assert rows[0].startswith(second["run"]) and "rejected" in rows[0] and "v2" in rows[0]
    search = next(r for r in rows if r.startswith(first["search"]))
    assert "search linear completed" in search and " 3 v1 " in search
    assert "No runs of nope yet" in get(client, "/runs?model=nope")
    assert len(re.findall(r'<tr class="run">', get(client, "/runs?model=credit"))) == 3

    both = f"{first['run']},{second['run']}"
    for path in [f"/runs?compare={both}",
                 f"/runs?compare={first['run']}&compare={second['run']}"]:  # fmt: skip
        compare = section(get(client, path), "compare")
        heads = re.findall(r'<th><a href="/runs/([^"]+)">', compare)
        assert heads == [first["run"], second["run"]]
        c1 = card.cell(app.runs.get(first["run"], app_actor())["params"]["C"])
        assert re.search(rf'<tr class="param differs"><th>C</th><td>{re.escape(c1)}</td>'
                         r"<td>1.0000</td>", compare)  # fmt: skip
        auc = [card.cell(r["metrics"]["holdout"]["roc_auc"]) for r in (first, second)]
        assert f"holdout.roc_auc {auc[0]} {auc[1]}" in text(compare)
        assert "gates_passed yes no" in text(compare)
    many = ",".join(f"r{i}" for i in range(9))
    assert "at most 8 runs at once, not 9" in get(client, f"/runs?compare={many}", 400)


def app_actor():
    from tests.conftest import ACTOR

    return ACTOR


def test_a_search_page_charts_its_trials(trained_home):
    app, client, first, _ = trained_home
    page = get(client, f"/runs/{first['search']}")
    trials = app.runs.list(app_actor(), parent=first["search"])
    trials = sorted((t for t in trials if t["kind"] == "trial"), key=lambda t: t["id"])
    assert len(trials) == 3
    rows = [text(r) for r in re.findall(r'<tr class="trial">.*?</tr>', page, re.S)]
    assert [r.split()[1] for r in rows] == [t["id"] for t in trials]
    scores = [t["metrics"]["roc_auc"] for t in trials]
    assert [r.split()[3] for r in rows] == [card.cell(s) for s in scores]
    box = section(page, "trials")
    root = parse(box[box.index("<svg") : box.index("</svg>") + 6])
    points = marks(root, "circle", "point")
    assert [title(p) for p in points] == [f"{t['id']} (completed): roc_auc {s:.3g}"
                                          for t, s in zip(trials, scores, strict=True)]  # fmt: skip
    best = max(range(3), key=lambda i: scores[i])
    assert min(float(p.get("cy")) for p in points) == float(points[best].get("cy"))
    assert f"Final fit {first['run']} (registered)" in text(section(page, "run"))
    params = text(section(page, "run-params"))
    assert "strategy random" in params and "trials 3" in params


def test_the_alias_form_sets_moves_and_removes_an_alias(trained_home):
    app, client, _, _ = trained_home
    actor = app_actor()
    r = client.post("/models/credit/1/alias", data={"alias": "champion"})
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/models/credit/1?done=credit@champion+now+names")
    page = get(client, r.headers["Location"])
    assert text(section(page, "aliases")).startswith("Aliases credit@champion ×")
    assert 'id="done"' in page and "credit@champion now names version 1" in page
    assert app.registry.aliases("credit", actor) == {"champion": 1}
    page = text(section(get(client, "/models"), "model-1"))
    assert "v1 live ready @champion" in page

    r = client.post("/models/credit/2/alias", data={"alias": "champion"}, follow_redirects=True)
    assert r.status_code == 200 and app.registry.aliases("credit", actor) == {"champion": 2}
    events = [e for e in app.audit.tail(5, actor) if e["action"] == "model.alias"]
    assert events and events[-1]["subject"] == "credit@champion"

    for bad in ["no spaces allowed", "<script>x</script>", ""]:
        r = client.post("/models/credit/2/alias", data={"alias": bad})
        assert r.status_code == 302 and "ok=0" in r.headers["Location"]
        page = get(client, r.headers["Location"])
        assert 'class="notice bad" id="done"' in page and "<script>x" not in page
    assert app.registry.aliases("credit", actor) == {"champion": 2}
    assert "give a name" in get(client, client.post("/models/credit/2/alias", data={}).location)

    r = client.post("/models/credit/2/alias", data={"alias": "champion", "remove": "1"},
                    follow_redirects=True)  # fmt: skip
    assert "removed alias credit@champion" in r.data.decode()
    assert app.registry.aliases("credit", actor) == {}
    assert client.post("/models/credit/9/alias", data={"alias": "x"}).status_code == 404
