"""Training end to end through the service and the CLI: every column as an input, specs
from the workspace, searches and their runs, each gate failing and passing, rejected
versions, aliases and model references, cards and lineage.

One home for the whole module (4,000 credit rows and a small accounts table); each test
trains under its own model name, so tests do not see each other's versions."""

import json
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance import demo
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.training.specs import Search
from tests.conftest import ACTOR, FEATURES, Falaj

CATEGORICAL = ["loan_purpose", "region"]
INPUTS = [*FEATURES, *CATEGORICAL]  # every column but keys, label and the sensitive one
HOLDOUT_ROWS = 800  # 20% of 4,000


@contextmanager
def opened(home: Path):
    """The appliance over the module's home, closed again so that CLI calls can open it."""
    app = Appliance.open({"home": str(home)})
    try:
        yield app
    finally:
        app.close()


def accounts(n: int = 1500, seed: int = 11) -> pa.Table:
    """Accounts with an opening date (some missing) that drives the label ``y``, a
    categorical channel, and ``noise``: a label of coin flips nothing can predict."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2025-01-01T00:00:00", "us")
    ts = start + np.sort(rng.integers(0, 300 * 86400, n)).astype("timedelta64[s]")
    opened_at = ts - rng.integers(30, 3 * 365, n).astype("timedelta64[D]")
    month = opened_at.astype("datetime64[M]").astype(np.int64) % 12 + 1
    amount = rng.normal(100, 20, n)
    z = -1.0 + 2.0 * (month >= 7) + 0.02 * (amount - 100)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    missing = np.arange(n) % 25 == 0
    return pa.table({
        "account_id": np.arange(n, dtype=np.int64),
        "ts": pa.array(ts, pa.timestamp("us")),
        "opened": pa.array(opened_at, pa.timestamp("us"), mask=missing),
        "amount": np.round(amount, 2),
        "channel": rng.choice(np.array(["web", "branch", "phone"]), n),
        "y": y,
        "noise": rng.integers(0, 2, n).astype(np.int64),
    })  # fmt: skip


ACCOUNT_INPUTS = ("opened", "amount", "channel")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("runs")
    pq.write_table(demo.credit_risk(4000, seed=5), base / "credit.parquet")
    pq.write_table(accounts(), base / "accounts.parquet")
    with opened(base / "home") as app:
        app.init(ACTOR)
        app.ingestion.ingest(base / "credit.parquet", "loans", "customer_id", "event_time", ACTOR)
        app.ingestion.ingest(base / "accounts.parquet", "accounts", "account_id", "ts", ACTOR)
    return base / "home"


@pytest.fixture(scope="module")
def cli(home) -> Falaj:
    return Falaj(home)


def train_args(name: str, *extra: str) -> tuple[str, ...]:
    return ("train", "--table", "loans", "--label", "default", "--name", name, *extra)


@pytest.fixture(scope="module")
def credit(cli, home) -> dict:
    """credit@1: every column, gender kept out as the sensitive attribute, from the CLI."""
    r = cli.ok(*train_args("credit", "--sensitive", "gender", "--json"))
    return json.loads(r.output)


def documents(home: Path, name: str, version: int) -> dict:
    with opened(home) as app:
        return app.registry.documents(name, version, ACTOR)


def gates(r: dict) -> dict[str, bool]:
    return {g["gate"]: g["passed"] for g in r["metrics"]["gates"]["results"]}


def failed(r: dict) -> set[str]:
    return {g for g, ok in gates(r).items() if not ok}


# -- inputs: every column by its role ---------------------------------------------------


def test_categorical_columns_are_inputs_and_the_sensitive_one_is_kept_for_fairness(credit, home):
    assert (credit["version"], credit["status"], credit["task"]) == (1, "ready", "binary")
    docs = documents(home, "credit", 1)
    schema, lineage = docs["schema.json"], docs["lineage.json"]
    assert [(i["name"], i["role"], i["type"]) for i in schema["inputs"]] == [
        *((f, "numeric", "double") for f in FEATURES),
        *((c, "categorical", "string") for c in CATEGORICAL),
    ]
    assert schema["sensitive"] == "gender"
    assert schema["entities"] == ["customer_id"]  # where a record's request key is
    # keys, label and the sensitive attribute have no role: they are never inputs
    assert lineage["roles"] == dict.fromkeys(FEATURES, "numeric") | dict.fromkeys(
        CATEGORICAL, "categorical"
    )
    # few categories: one-hot columns, one per purpose seen in training
    names = docs["pipeline.json"]["feature_names"]
    purposes = ["business", "car", "education", "home", "personal"]
    assert sorted(n for n in names if n.startswith("loan_purpose=")) == [
        f"loan_purpose={p}" for p in purposes
    ]
    assert not any(n.startswith("gender") for n in names)

    fairness = credit["metrics"]["fairness"]
    assert fairness["sensitive"] == "gender"
    groups = {g["group"]: g for g in fairness["groups"]}
    assert sorted(groups) == ["female", "male"]
    assert sum(g["count"] for g in groups.values()) == HOLDOUT_ROWS
    assert credit["metrics"]["holdout"]["rows"] == HOLDOUT_ROWS
    rates = [g["selection_rate"] for g in groups.values()]
    assert fairness["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))
    assert {"demographic_parity", "equalized_odds"} <= set(gates(credit))
    assert docs["verdict.json"]["status"] == "ready"


def test_role_overrides_and_features(cli, home):
    cli.ok(*train_args("roles", "--features", "age,income,num_credit_lines,region",
                       "--role", "num_credit_lines=categorical", "--role", "age=ignore"))  # fmt: skip
    docs = documents(home, "roles", 1)
    assert [(i["name"], i["role"]) for i in docs["schema.json"]["inputs"]] == [
        ("income", "numeric"), ("num_credit_lines", "categorical"), ("region", "categorical")]  # fmt: skip
    assert docs["lineage.json"]["roles"] == {"age": "ignore", "income": "numeric",
                                             "num_credit_lines": "categorical",
                                             "region": "categorical"}  # fmt: skip
    r = cli(*train_args("roles", "--sensitive", "gender", "--role", "gender=categorical"))
    assert r.exit_code == 2 and "'gender' is excluded from the model inputs" in r.stderr
    r = cli(*train_args("roles", "--role", "age=bogus"))
    assert r.exit_code == 2 and "--role 'age=bogus': expected COLUMN=ROLE" in r.stderr
    r = cli(*train_args("roles", "--features", "age,nope"))
    assert r.exit_code == 2 and "has no column 'nope'" in r.stderr
    for col, what in [("customer_id", "an entity key or timestamp column"),
                      ("default", "the label"), ("gender", "the sensitive attribute")]:  # fmt: skip
        r = cli(*train_args("roles", "--features", f"age,{col}", "--sensitive", "gender"))
        assert r.exit_code == 2
        assert f"features: {col!r} is {what} of table 'loans', not a model input" in r.stderr
    with opened(home) as app:
        assert [v["version"] for v in app.registry.versions(ACTOR) if v["name"] == "roles"] == [1]


def test_a_regression_label(home):
    with opened(home) as app:
        r = app.training.train("loans", "income", "income", ACTOR,
                               gates={"robustness": {"missing": None}})  # fmt: skip
    assert r["task"] == "regression" and r["status"] == "ready"
    h, base = r["metrics"]["holdout"], r["metrics"]["baseline"]
    assert set(h) == {"rows", "rmse", "mae", "r2"} and h["rows"] == HOLDOUT_ROWS
    assert base["kind"] == "training mean"
    assert h["rmse"] < base["rmse"] and h["r2"] > base["r2"]  # age drives income
    assert h["mae"] <= h["rmse"]
    assert "calibration" not in gates(r) and "robustness_missing" not in gates(r)
    baseline = next(g for g in r["metrics"]["gates"]["results"] if g["gate"] == "baseline")
    assert (baseline["metric"], baseline["op"]) == ("rmse", "<=")
    assert baseline["value"] == pytest.approx(h["rmse"])
    assert r["metrics"]["fairness"] is None


def test_a_datetime_column_is_an_input(home):
    with opened(home) as app:
        r = app.training.train("accounts", "y", "accounts", ACTOR, features=ACCOUNT_INPUTS)
        model = app.registry.load("accounts", r["version"])
        rows = [{"opened": "2024-08-15T10:00:00", "amount": 100.0, "channel": "web"},
                {"opened": "2024-02-15T10:00:00", "amount": 100.0, "channel": "web"},
                {"opened": None, "amount": None, "channel": None}]  # fmt: skip
        p = model.predict_records(rows)
    assert [(i.name, i.role, i.type) for i in model.inputs] == [
        ("opened", "datetime", "datetime"), ("amount", "numeric", "double"),
        ("channel", "categorical", "string")]  # fmt: skip
    names = model.pipeline.feature_names_
    assert {"opened__year", "opened__month", "opened__missing"} <= set(names)
    assert r["metrics"]["holdout"]["roc_auc"] > 0.65  # the opening month carries the signal
    assert np.isfinite(p).all() and p[0] > p[1]  # opened in the second half of a year


# -- serving ---------------------------------------------------------------------------


RECORDS = [
    dict.fromkeys(FEATURES, 1.0) | {"income": 15000.0, "loan_amount": 40000.0,
                                    "loan_purpose": "car", "region": "dubai"},
    dict.fromkeys(INPUTS),  # every input null
    dict.fromkeys(FEATURES, 2.0) | {"income": None, "loan_purpose": "yacht", "region": "atlantis"},
]  # fmt: skip


@pytest.mark.parametrize(
    "family, params",
    [("linear", {}), ("gbt", {"n_estimators": 30}), ("mlp", {"epochs": 3})],
)
def test_serving_answers_nulls_and_unseen_categories_like_the_model(home, family, params):
    name = f"serve_{family}"
    with opened(home) as app:
        r = app.training.train("loans", "default", name, ACTOR, family=family, params=params,
                               sensitive="gender")  # fmt: skip
        app.serving.deploy(name, r["version"], ACTOR, force=True)
        served = app.serving.predict(name, RECORDS, ACTOR)
        model = app.registry.load(name, r["version"])
        docs = app.registry.documents(name, r["version"], ACTOR)
    assert served["version"] == r["version"] and len(served["predictions"]) == 3
    assert np.isfinite(served["predictions"]).all()
    assert all(0.0 <= p <= 1.0 for p in served["predictions"])
    np.testing.assert_allclose(served["predictions"], model.predict_records(RECORDS), rtol=1e-12)
    assert docs["model.json"]["family"] == family
    assert docs["lineage.json"]["params"] | params == docs["lineage.json"]["params"]
    assert ("model.txt" in docs) == (family == "gbt")  # LightGBM's own text format


# -- specs from the workspace ------------------------------------------------------------


SPEC = """\
training:
  risk:
    table: loans
    label: default
    sensitive: gender
    family: linear
    split: {kind: stratified, holdout: 0.25}
    search: {strategy: random, trials: 3, seed: 1}
    gates: {calibration: {ece: 0.5}}
    intended_use: Ranks loan applications for review by a person.
"""


def test_a_spec_from_the_workspace_applies_and_trains(cli, home, tmp_path):
    ws = tmp_path / "falaj.yaml"
    ws.write_text(SPEC)
    cli.ok("apply", "--workspace", ws)
    r = cli("train", "--spec", "risk", "--workspace", ws)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "1" and r.stderr.startswith("risk@1 (linear): hold-out ROC AUC")
    docs = documents(home, "risk", 1)
    lineage, metrics = docs["lineage.json"], docs["metrics.json"]
    assert lineage["spec"]["name"] == "risk" and lineage["spec"]["split"] == "stratified"
    assert lineage["split"] == lineage["split"] | {"kind": "stratified", "holdout": 0.25,
                                                   "holdout_rows": 1000}  # fmt: skip
    assert lineage["spec"]["search"]["trials"] == 3 and lineage["seed"] == 1
    assert metrics["holdout"]["rows"] == 1000 and metrics["search"]["trials"] == 3
    calibration = next(g for g in metrics["gates"]["results"] if g["gate"] == "calibration")
    assert calibration["threshold"] == 0.5
    assert docs["card.json"]["intended_use"] == "Ranks loan applications for review by a person."

    r = cli("train", "--spec", "risk", "--workspace", ws, "--table", "loans")
    assert r.exit_code == 2 and "give either --spec or --table" in r.stderr
    r = cli("train", "--spec", "nope", "--workspace", ws)
    assert r.exit_code == 2 and "no training spec 'nope' (specs: risk)" in r.stderr


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("    family: linear\n", "    famly: linear\n", "training: risk: unknown key 'famly'"),
        ("family: linear", "family: forest",
         "training: risk: family: unknown model family 'forest'"),
        ("kind: stratified", "kind: random",
         "training: risk: split: kind: 'random' is not one of time, stratified, kfold"),
        ("strategy: random", "strategy: bayes",
         "training: risk: search: strategy: 'bayes' is not one of random, grid, halving"),
        ("seed: 1", "seed: 1, metric: auc", "training: risk: search: metric: 'auc' is not one"),
        ("{ece: 0.5}", "{eces: 0.5}", "training: risk: gates.calibration: unknown key 'eces'"),
        ("calibration:", "calibrate:", "training: risk: gates: unknown key 'calibrate'"),
        ("{ece: 0.5}", "{ece: 2}", "training: risk: gates.calibration.ece must lie in [0, 1]"),
        ("family: linear", "family: linear\n    params: {bogus: 1}",
         "training: risk: params: linear has no parameter 'bogus'"),
        ("family: linear", "family: linear\n    params: {C: -1}",
         "training: risk: params: C must be > 0, got -1"),
        ("seed: 1", "seed: 1, space: {leaves: {int: [2, 8]}}",
         "training: risk: search: space: linear has no parameter 'leaves'"),
    ],
)  # fmt: skip
def test_bad_specs_are_refused_naming_the_file_and_key(cli, tmp_path, old, new, message):
    ws = tmp_path / "bad.yaml"
    ws.write_text(SPEC.replace(old, new))
    for command in (("apply",), ("train", "--spec", "risk")):
        r = cli(*command, "--workspace", ws)
        assert r.exit_code == 2
        assert r.stderr.startswith(f"error: {ws}: {message}"), r.stderr


# -- search ------------------------------------------------------------------------------


def test_a_search_metric_must_suit_the_task(home):
    with opened(home) as app:
        with pytest.raises(BadInput, match="search metric 'rmse' does not apply to binary"):
            app.training.train("loans", "default", "wrong_metric", ACTOR,
                               search=Search("random", 2, metric="rmse"))  # fmt: skip
        assert not [v for v in app.registry.versions(ACTOR) if v["name"] == "wrong_metric"]


def test_a_search_that_fails_is_not_left_running(home):
    with opened(home) as app:
        with pytest.raises(BadInput, match="the search completed no trial"):
            app.training.train("loans", "default", "failing", ACTOR, search=Search(
                "random", 2, space={"max_iter": {"choice": [0, -1]}}))  # fmt: skip
        runs = app.runs.list(ACTOR, model="failing")
    assert [(r["kind"], r["status"]) for r in runs if r["kind"] == "search"] == [
        ("search", "failed")]  # fmt: skip


SPACE = {"C": {"log_uniform": [0.01, 10.0]}, "max_iter": {"choice": [50, 100]}}


def search_runs(app, r: dict) -> tuple[dict, list[dict], dict]:
    """(the search run, its trials by number, the final fit) of a training result."""
    runs = app.runs.list(ACTOR, model=r["name"])
    search = next(x for x in runs if x["id"] == r["search"])
    trials = sorted((x for x in runs if x["parent"] == r["search"] and x["kind"] == "trial"),
                    key=lambda x: int(x["id"].rsplit("-t", 1)[1]))  # fmt: skip
    final = next(x for x in runs if x["id"] == r["run"])
    return search, trials, final


@pytest.mark.parametrize("strategy, trials", [("random", 5), ("grid", 6), ("halving", 9)])
def test_searches_record_their_trials_and_are_seeded(home, strategy, trials):
    name = f"search_{strategy}"
    outcomes = []
    with opened(home) as app:
        for seed in (7, 7, 8):
            r = app.training.train("loans", "default", name, ACTOR, features=tuple(FEATURES),
                                   search=Search(strategy, trials, seed=seed, space=SPACE))  # fmt: skip
            outcomes.append((r, *search_runs(app, r)))
    (r, search, tried, final), again, other = outcomes
    assert search["kind"] == "search" and search["status"] == "completed"
    assert search["params"] == {"strategy": strategy, "trials": trials, "space": SPACE}
    assert search["version"] == r["version"] and search["seed"] == 7
    assert search["metrics"]["trials"] == trials and search["metrics"]["stopped_by"] == "trials"
    assert len(tried) == trials
    for t in tried:
        assert (t["kind"], t["parent"], t["model"], t["family"]) == (
            "trial", search["id"], name, "linear")  # fmt: skip
        assert 0.01 <= t["params"]["C"] <= 10.0 and t["params"]["max_iter"] in (50, 100)
        assert 0.5 < t["metrics"]["roc_auc"] < 1.0 and t["duration_s"] > 0
    statuses = {t["status"] for t in tried}
    if strategy == "halving":  # pruned at a rung below the full effort
        pruned = [t for t in tried if t["status"] == "pruned"]
        assert pruned and all(t["metrics"]["budget"] < 1.0 for t in pruned)
        assert statuses == {"completed", "pruned"}
    else:
        assert statuses == {"completed"}
    done = [t for t in tried if t["status"] == "completed"]
    assert all(t["metrics"]["budget"] == 1.0 for t in done)
    best = max(done, key=lambda t: t["metrics"]["roc_auc"])
    assert search["metrics"]["roc_auc"] == best["metrics"]["roc_auc"]
    assert r["metrics"]["search"]["best_score"] == best["metrics"]["roc_auc"]
    assert (final["kind"], final["parent"], final["status"]) == (
        "final",
        search["id"],
        "registered",
    )
    assert final["params"]["C"] == best["params"]["C"]
    if strategy == "grid":  # distinct points of the grid
        assert len({(t["params"]["C"], t["params"]["max_iter"]) for t in tried}) == trials

    # the same seed: the same trials, scores and best; another seed: other trials
    _, _, tried_again, final_again = again
    assert [t["params"] for t in tried_again] == [t["params"] for t in tried]
    assert [t["status"] for t in tried_again] == [t["status"] for t in tried]
    assert [t["metrics"]["roc_auc"] for t in tried_again] == [
        t["metrics"]["roc_auc"] for t in tried
    ]
    assert final_again["params"] == final["params"]
    assert again[0]["metrics"]["search"]["best_trial"] == r["metrics"]["search"]["best_trial"]
    assert [t["params"] for t in other[2]] != [t["params"] for t in tried]


def test_a_timeout_cuts_a_search_short_and_runs_are_listed(cli):
    r = cli.ok(*train_args("timed", "--features", ",".join(FEATURES), "--search", "random",
                           "--trials", "50", "--timeout", "0.001s", "--seed", "3", "--json"))  # fmt: skip
    r = json.loads(r.output)
    search = r["metrics"]["search"]
    assert search["stopped_by"] == "timeout" and 1 <= search["trials"] < 50
    runs = json.loads(cli.ok("models", "runs", "timed", "--json").output)
    kinds = sorted(x["kind"] for x in runs)
    assert kinds == ["final", "search", *["trial"] * search["trials"]]
    assert all(x["model"] == "timed" for x in runs)
    row = next(x for x in runs if x["kind"] == "search")
    assert row["id"] == r["search"] and row["metrics"]["stopped_by"] == "timeout"
    assert row["params"]["trials"] == 50 and row["seed"] == 3
    only = json.loads(cli.ok("models", "runs", "timed", "--search", r["search"], "--json").output)
    assert sorted(x["kind"] for x in only) == ["final", *["trial"] * search["trials"]]
    text = cli.ok("models", "runs", "timed").output
    assert re.search(rf"^{r['run']}  final  timed v{r['version']}  linear registered ", text, re.M)


# -- gates, each failing and passing ----------------------------------------------------


STRICT = {"fairness": {"demographic_parity": 0.0, "equalized_odds": 0.0},
          "robustness": {"noise": 0.0, "missing": 0.0, "unseen": 0.0},
          "calibration": {"ece": 0.0}}  # fmt: skip
LENIENT = {"fairness": {"demographic_parity": 1.0, "equalized_odds": 1.0},
           "robustness": {"noise": 1.0, "missing": 1.0, "unseen": 1.0},
           "calibration": {"ece": 1.0}}  # fmt: skip
THRESHOLD_GATES = {"demographic_parity", "equalized_odds", "robustness_noise",
                   "robustness_missing", "robustness_unseen", "calibration"}  # fmt: skip


def test_threshold_gates_fail_at_zero_and_pass_at_their_maximum(home):
    with opened(home) as app:
        strict = app.training.train("loans", "default", "strict", ACTOR, sensitive="gender",
                                    gates=STRICT)  # fmt: skip
        lenient = app.training.train("loans", "default", "lenient", ACTOR, sensitive="gender",
                                     gates=LENIENT)  # fmt: skip
    assert strict["status"] == "rejected" and not strict["gates_passed"]
    assert failed(strict) == THRESHOLD_GATES
    assert gates(strict)["baseline"] and gates(strict)["champion"]
    assert lenient["status"] == "ready" and all(gates(lenient).values())
    assert set(gates(lenient)) == {"baseline", "champion"} | THRESHOLD_GATES
    by_gate = {g["gate"]: g for g in strict["metrics"]["gates"]["results"]}
    fairness, robustness = strict["metrics"]["fairness"], strict["metrics"]["robustness"]
    assert by_gate["demographic_parity"]["value"] == fairness["demographic_parity_difference"] > 0
    assert by_gate["equalized_odds"]["value"] == fairness["equalized_odds_difference"] > 0
    for key in ("noise", "missing", "unseen"):
        g = by_gate[f"robustness_{key}"]
        assert g["value"] == robustness[key]["mean_abs_change"] > 0 and g["threshold"] == 0.0
    assert by_gate["calibration"]["value"] == strict["metrics"]["holdout"]["ece"] > 0
    assert by_gate["calibration"]["detail"].startswith("expected calibration error ")
    assert "above the limit 0" in by_gate["calibration"]["detail"]


def test_the_baseline_gate_fails_on_a_label_of_pure_noise(home):
    # the margin asks for a real gain over the prior: coin flips can only tie it by luck
    # (calibration off: a model of coin flips is no worse calibrated than it is useless)
    spec = {"baseline": {"margin": 0.005}, "calibration": False}
    with opened(home) as app:
        noise = app.training.train("accounts", "noise", "noise", ACTOR, gates=spec,
                                   features=ACCOUNT_INPUTS)  # fmt: skip
        signal = app.training.train("accounts", "y", "signal", ACTOR, gates=spec,
                                    features=ACCOUNT_INPUTS)  # fmt: skip
    assert failed(noise) == {"baseline"} and noise["status"] == "rejected"
    result = noise["metrics"]["gates"]["results"][0]
    assert result["gate"] == "baseline" and result["metric"] == "log_loss"
    prior = noise["metrics"]["baseline"]
    assert prior["kind"] == "training prior"
    assert result["threshold"] == pytest.approx(prior["log_loss"] - 0.005)
    assert result["value"] > result["threshold"]
    assert gates(signal)["baseline"] and signal["status"] == "ready"


def test_the_champion_gate_needs_the_margin_over_the_champion(cli, home):
    spec = {"champion": {"margin": 0.01}}
    with opened(home) as app:
        good = app.training.train("loans", "default", "champ", ACTOR)
        assert good["metrics"]["champion"] is None  # no champion yet: the gate passes
        app.registry.set_alias("champ", "champion", good["version"], ACTOR)
        worse = app.training.train("loans", "default", "champ", ACTOR, features=("age",),
                                   gates=spec)  # fmt: skip
        same = app.training.train("loans", "default", "champ", ACTOR)  # margin 0: a tie passes
        rows = {v["version"]: v for v in app.registry.versions(ACTOR) if v["name"] == "champ"}
    assert worse["status"] == "rejected" and failed(worse) == {"champion"}
    champion = worse["metrics"]["champion"]
    assert champion["version"] == good["version"]
    assert champion["holdout"]["roc_auc"] == pytest.approx(good["metrics"]["holdout"]["roc_auc"])
    result = next(g for g in worse["metrics"]["gates"]["results"] if g["gate"] == "champion")
    assert result["threshold"] == pytest.approx(champion["holdout"]["roc_auc"] + 0.01)
    assert result["detail"].startswith("trails the champion by ")
    assert same["status"] == "ready" and gates(same)["champion"]
    # the same spec and data again: the very same model, which ties the champion
    assert same["metrics"]["champion"]["holdout"]["roc_auc"] == pytest.approx(
        same["metrics"]["holdout"]["roc_auc"], abs=1e-12
    )
    assert [rows[v]["status"] for v in sorted(rows)] == ["ready", "rejected", "ready"]
    assert rows[good["version"]]["aliases"] == ["champion"]
    listed = json.loads(cli.ok("models", "list", "--json").output)
    assert [m["status"] for m in listed if m["name"] == "champ"] == ["ready", "rejected", "ready"]


def test_without_a_champion_alias_the_live_version_is_the_champion(home):
    with opened(home) as app:
        first = app.training.train("loans", "default", "live", ACTOR, features=tuple(FEATURES))
        app.serving.deploy("live", first["version"], ACTOR)
        second = app.training.train("loans", "default", "live", ACTOR, features=tuple(FEATURES),
                                    gates={"champion": {"margin": 0.5}})  # fmt: skip
    assert second["metrics"]["champion"]["version"] == first["version"]
    assert failed(second) == {"champion"} and second["status"] == "rejected"


def test_a_rejected_version_needs_force_to_deploy_and_is_audited(cli, home):
    with opened(home) as app:
        r = app.training.train("loans", "default", "rejected", ACTOR,
                               gates={"calibration": {"ece": 0.0}})  # fmt: skip
    assert r["status"] == "rejected" and failed(r) == {"calibration"}
    listed = json.loads(cli.ok("models", "list", "--json").output)
    assert [m["status"] for m in listed if m["name"] == "rejected"] == ["rejected"]
    assert "rejected@1  auc=" in cli.ok("models", "list").output
    verdict = documents(home, "rejected", 1)["verdict.json"]
    assert verdict["status"] == "rejected" and verdict["passed"] is False
    assert [g["gate"] for g in verdict["results"] if not g["passed"]] == ["calibration"]

    r = cli("deploy", "rejected@1")
    assert r.exit_code == 1
    assert "model rejected@1 was rejected by its gates (calibration); use --force" in r.stderr
    with opened(home) as app:
        assert app.control.deployment("rejected") is None
    cli.ok("deploy", "rejected@1", "--force")
    with opened(home) as app:
        events = [e for e in app.audit.tail(3, ACTOR) if e["subject"] == "rejected@1"]
    deploy = next(e for e in events if e["action"] == "model.deploy")
    forced = next(e for e in events if e["action"] == "model.deploy_forced")
    assert deploy["details"]["forced"] is True
    assert deploy["details"]["failed_gates"] == ["calibration"]
    assert forced["details"] == {"failed_gates": ["calibration"], "slot": "blue"}


# -- registry: aliases, references, cards, lineage -------------------------------------


def test_aliases_are_set_moved_and_deleted_with_audit_events(cli, home):
    for _ in range(2):
        cli.ok(*train_args("aliased", "--features", ",".join(FEATURES)))
    set_ = json.loads(cli.ok("models", "alias", "aliased", "champion", "1", "--json").output)
    assert set_ == {"name": "aliased", "alias": "champion", "version": 1, "previous_version": None}
    moved = cli.ok("models", "alias", "aliased", "champion", "2")
    assert moved.output.strip() == "models:/aliased@champion -> version 2 (was 1)"
    cli.ok("models", "alias", "aliased", "challenger", "1")
    gone = cli.ok("models", "alias", "aliased", "challenger", "--delete")
    assert gone.output.strip() == "aliased@challenger removed (it named version 1)"
    with opened(home) as app:
        assert app.registry.aliases("aliased", ACTOR) == {"champion": 2}
        events = [e for e in reversed(app.audit.tail(4, ACTOR))]
    assert [(e["action"], e["subject"]) for e in events] == [
        ("model.alias", "aliased@champion"), ("model.alias", "aliased@champion"),
        ("model.alias", "aliased@challenger"), ("model.alias_deleted", "aliased@challenger")]  # fmt: skip
    assert [e["details"].get("version") for e in events] == [1, 2, 1, None]
    assert [e["details"]["previous_version"] for e in events] == [None, 1, None, 1]
    for bad, message in [("latest", "alias 'latest' is reserved"),
                         ("9lives", "alias '9lives' is not valid")]:  # fmt: skip
        r = cli("models", "alias", "aliased", bad, "1")
        assert r.exit_code == 2 and message in r.stderr
    r = cli("models", "alias", "aliased", "champion", "7")
    assert r.exit_code == 2 and "model 'aliased' has no version 7 (versions: 1, 2)" in r.stderr
    r = cli("models", "alias", "aliased", "nope", "--delete")
    assert r.exit_code == 2 and "model 'aliased' has no alias 'nope'" in r.stderr


def test_every_form_of_model_reference_resolves(cli, home):
    for _ in range(2):
        cli.ok(*train_args("refs", "--features", ",".join(FEATURES)))
    cli.ok("models", "alias", "refs", "champion", "1")
    forms = {"models:/refs/1": 1, "models:/refs@champion": 1, "refs@champion": 1, "refs@1": 1,
             "refs@2": 2, "refs": 2, "refs@latest": 2}  # fmt: skip
    for ref, version in forms.items():
        shown = json.loads(cli.ok("models", "show", ref).output)
        assert (shown["name"], shown["version"]) == ("refs", version), ref
        card = cli.ok("models", "card", ref).output
        assert card.startswith(f"# Model card: refs v{version}\n"), (ref, card[:80])
    assert json.loads(cli.ok("models", "show", "refs@1").output)["aliases"] == ["champion"]
    deployed = json.loads(cli.ok("deploy", "models:/refs@champion", "--json").output)
    assert (deployed["version"], deployed["slot"]) == (1, "blue")
    deployed = json.loads(cli.ok("deploy", "refs", "--version", "2", "--json").output)
    assert (deployed["version"], deployed["previous_version"]) == (2, 1)

    r = cli("deploy", "refs")
    assert r.exit_code == 2 and "give the version: refs@VERSION, refs@ALIAS or --version N" in (
        r.stderr
    )
    bad = {"refs@nope": "model 'refs' has no alias 'nope' (aliases: champion)",
           "refs@9": "model 'refs' has no version 9 (versions: 1, 2)",
           "models:/refs/x": "'models:/refs/x': the version after '/' must be a number",
           "ghost@1": "model 'ghost' is not registered",
           "ghost@champion": "model 'ghost' is not registered",
           "bad name": "model name 'bad name' is not valid"}  # fmt: skip
    for ref, message in bad.items():
        for command in (("models", "show", ref), ("models", "card", ref), ("deploy", ref)):
            if command[0] == "deploy" and "@" not in ref and "/" not in ref:
                command = (*command, "--version", "1")
            r = cli(*command)
            assert r.exit_code == 2, (command, r.output, r.stderr)
            assert message in r.stderr, (command, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1


def test_the_model_card_names_use_fairness_and_gates(cli, home, tmp_path):
    with opened(home) as app:
        r = app.training.train("loans", "default", "carded", ACTOR, sensitive="gender",
                               intended_use="Ranks loan applications for review.")  # fmt: skip
        app.training.train("loans", "default", "plain", ACTOR, features=tuple(FEATURES))
        fairness = r["metrics"]["fairness"]
    md = cli.ok("models", "card", "carded@1").output
    out = tmp_path / "card.html"
    assert cli.ok("models", "card", "carded@1", "--format", "html", "--out", out).output.strip() == (
        f"wrote {out}")  # fmt: skip
    html = out.read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    for text in (md, html):
        assert "Intended use" in text and "Ranks loan applications for review." in text
        assert "Fairness" in text and "gender" in text
        assert "Gates" in text and "Every gate passed." in text
    for g in fairness["groups"]:
        assert f"| {g['group']} | {g['count']} |" in md
        assert f"<td>{g['group']}</td><td>{g['count']}</td>" in html
    for gate in ("baseline", "demographic_parity", "equalized_odds", "calibration"):
        assert f"| {gate.replace('_', chr(92) + '_')} |" in md
        assert f"<td>{gate}</td>" in html
    # without a sensitive attribute the card says fairness was not measured
    plain = cli.ok("models", "card", "plain@1").output
    assert "Not measured: no sensitive attribute." in plain


def test_lineage_names_data_params_seed_device_code_and_spec(credit, home):
    docs = documents(home, "credit", 1)
    lineage, model = docs["lineage.json"], docs["model.json"]
    with opened(home) as app:
        row = app.registry.version("credit", 1, ACTOR)
        again = app.training.train("loans", "default", "credit", ACTOR, sensitive="gender",
                                   seed=4)  # fmt: skip
        lineage2 = app.registry.documents("credit", again["version"], ACTOR)["lineage.json"]
    assert re.fullmatch(r"[0-9a-f]{64}", lineage["data_fingerprint"])
    assert row["data_fingerprint"] == lineage["data_fingerprint"] == lineage2["data_fingerprint"]
    assert (lineage["table"], lineage["label"], lineage["rows"]) == ("loans", "default", 4000)
    assert lineage["source"] == "table 'loans'" and lineage["ingest_batches"] == 1
    assert lineage["family"] == model["family"] == "linear"
    assert lineage["params"]["C"] == 1.0 and "max_iter" in lineage["params"]
    assert (lineage["seed"], lineage2["seed"]) == (0, 4)
    assert lineage["device"] == model["device"] and lineage["device"] in ("cpu", "cuda")
    assert re.fullmatch(r"falaj \S+ src:[0-9a-f]{16}", lineage["code_version"])
    assert lineage["code_version"] == lineage2["code_version"]
    spec = lineage["spec"]
    assert (spec["name"], spec["table"], spec["label"], spec["sensitive"]) == (
        "credit", "loans", "default", "gender")  # fmt: skip
    assert spec["family"] == "linear" and spec["split"] == "time" and spec["search"] is None
    assert lineage["features"] == INPUTS
    assert lineage["split"]["holdout_rows"] == HOLDOUT_ROWS
