"""The Models and Runs pages: every version with its status, aliases and gates; one
version's metrics, gates, fairness, calibration, robustness and lineage, with a form that
sets or moves an alias; its model card (HTML and Markdown); training runs, a search's
trials and runs compared side by side. Charts are SVG drawn here (``webui.charts``);
the form posts to the registry service the CLI calls, then redirects back
(post/redirect/get) with one line of outcome."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from markupsafe import Markup

from appliance.errors import BadInput, FalajError
from appliance.features.views import WORKSPACE_FILE
from appliance.registry import card
from appliance.training.gates import LOWER_IS_BETTER, failed_gates
from webui import charts
from webui.api import appliance, back, request_actor
from webui.auth import needs

bp = Blueprint("models", __name__)
bp.add_app_template_filter(card.cell, "cell")

MAX_REF = 200  # an alias or run id is a short name; anything longer is cut, then refused
MAX_COMPARE = 8  # runs side by side; more would not fit a screen
MAX_RUNS = 300  # rows of the runs table
SCORES = ("roc_auc", "rmse", "log_loss", "r2", "mae", "accuracy")  # a run's headline metric
NOT_SCORES = {"trials", "best_trial", "stopped_by", "budget", "gates_passed"}


def _task(metrics: dict[str, Any]) -> str:
    holdout = metrics.get("holdout") or {}
    return metrics.get("task") or ("regression" if "rmse" in holdout else "binary")


def headline(metrics: dict[str, Any]) -> tuple[str, Any]:
    """The one hold-out number a list shows: ROC AUC for a classifier, RMSE for regression."""
    key = "rmse" if _task(metrics) == "regression" else "roc_auc"
    return key, (metrics.get("holdout") or {}).get(key)


def gate_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    rows = card.gate_rows(metrics.get("gates"))
    failed = [str(r.get("gate")) for r in rows if r.get("passed") is False]
    passed = (metrics.get("gates") or {}).get("passed")
    return {"passed": passed, "total": len(rows), "ok": len(rows) - len(failed), "failed": failed}


def _back(name: str, version: int, message: str, ok: bool = True):
    return back("models.version", message, ok, "#aliases", name=name, version=version)


@bp.get("/models")
@needs("model.read")
def page():
    rows = appliance().registry.versions(request_actor())
    models: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["name"], -r["version"])):
        metric, value = headline(r.get("metrics") or {})
        models.setdefault(r["name"], []).append(
            r | {"metric": metric, "score": value, "gates": gate_summary(r.get("metrics") or {})}
        )
    return render_template("models.html", models=models)


def _charts(metrics: dict[str, Any]) -> dict[str, Markup]:
    """The version page's charts, each only when its data is there."""
    out = {}
    fairness = metrics.get("fairness")
    groups = [g for g in (fairness or {}).get("groups") or [] if isinstance(g, dict)]
    if groups:
        names = [str(g.get("group")) for g in groups]
        series = {label: [g.get(key) for g in groups]
                  for label, key in [("selection rate", "selection_rate"), ("TPR", "tpr"),
                                     ("FPR", "fpr")]}  # fmt: skip
        title = f"Selection rate, TPR and FPR per group of {fairness.get('sensitive')}"
        out["fairness"] = charts.grouped_bars(names, series, title=title)  # axis fits the rates
    holdout = metrics.get("holdout") or {}
    if holdout.get("calibration"):
        out["calibration"] = charts.reliability(
            holdout["calibration"], title="Reliability diagram: mean predicted probability "
            "against the observed rate, per bin (the diagonal is perfect calibration)"
        )  # fmt: skip
    metric, value = headline(metrics)
    compared = [("this version", value)]
    if isinstance(metrics.get("baseline"), dict):
        compared.append((metrics["baseline"].get("kind") or "baseline",
                         metrics["baseline"].get(metric)))  # fmt: skip
    champion = metrics.get("champion")
    if isinstance(champion, dict):
        compared.append((f"champion v{champion.get('version')}",
                         (champion.get("holdout") or {}).get(metric)))  # fmt: skip
    if value is not None and len(compared) > 1:
        label = card.METRIC_NAMES.get(metric, metric)
        y_hi = 1.0 if metric == "roc_auc" else None
        out["metrics"] = charts.bars(compared, title=f"Hold-out {label} compared", y_hi=y_hi)
    return {k: Markup(v) for k, v in out.items()}  # noqa: S704 -- every label escaped


@bp.get("/models/<name>/<int:version>")
@needs("model.read")
def version(name: str, version: int):
    app, actor = appliance(), request_actor()
    app.registry.version(name, version, actor)  # UnknownModel: the 404 page
    # the listing's row carries what one version's row lacks: live, aliases
    row = next(
        r for r in app.registry.versions(actor) if (r["name"], r["version"]) == (name, version)
    )
    info = app.registry.card_info(name, version, actor)
    metrics = info.get("metrics") or row.get("metrics") or {}
    return render_template(
        "model_version.html",
        row=row,
        info=info,
        sections=card.sections(info),
        charts=_charts(metrics),
        gates=gate_summary(metrics),
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.post("/models/<name>/<int:version>/alias")
@needs("model.alias")
def alias(name: str, version: int):
    app, actor = appliance(), request_actor()
    app.registry.version(name, version, actor)  # an unknown version is a 404, not a redirect
    wanted = request.form.get("alias", "").strip()
    remove = request.form.get("remove") == "1"
    try:
        if not wanted:
            raise BadInput('field "alias": give a name, for example champion')
        if len(wanted) > MAX_REF:
            raise BadInput(f'field "alias": longer than {MAX_REF} characters')
        if remove:
            app.registry.delete_alias(name, wanted, actor)
            return _back(name, version, f"removed alias {name}@{wanted}")
        app.registry.set_alias(name, wanted, version, actor)
        return _back(name, version, f"{name}@{wanted} now names version {version}")
    except FalajError as exc:
        return _back(name, version, exc.message, ok=False)


@bp.get("/models/<name>/<int:version>/card")
@needs("model.read")
def card_html(name: str, version: int):
    info = appliance().registry.card_info(name, version, request_actor())
    return Response(card.html(info), mimetype="text/html")


@bp.get("/models/<name>/<int:version>/card.md")
@needs("model.read")
def card_markdown(name: str, version: int):
    info = appliance().registry.card_info(name, version, request_actor())
    filename = f"{name}-v{version}-card.md".replace('"', "")
    return Response(card.markdown(info), mimetype="text/markdown",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


# -- runs --------------------------------------------------------------------------------


def flat(metrics: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics one level deep: {"holdout": {"roc_auc": x}} as {"holdout.roc_auc": x}."""
    out: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, dict):
            out |= {f"{k}.{k2}": v2 for k2, v2 in v.items() if not isinstance(v2, dict | list)}
        elif not isinstance(v, list):
            out[k] = v
    return out


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def score(run: dict[str, Any]) -> tuple[str | None, Any]:
    """The metric a runs table shows: a search's objective (its best trial's score), else
    the first of ``SCORES`` a run has, on validation (trials) or on the hold-out (fits)."""
    metrics = flat(run.get("metrics") or {})
    if run.get("kind") == "search":
        for k, v in metrics.items():
            if k not in NOT_SCORES and _number(v):
                return k, v
    for key in [*SCORES, *(f"holdout.{k}" for k in SCORES)]:
        if _number(metrics.get(key)):
            return key, metrics[key]
    return None, None


def _compare(ids: list[str], actor) -> dict[str, Any]:
    runs = [appliance().runs.get(i, actor) for i in ids]  # NotFound: the 404 page
    metrics = [flat(r.get("metrics") or {}) for r in runs]
    params = [r.get("params") or {} for r in runs]

    def rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for k in sorted({k for v in values for k in v}):
            cells = [card.cell(v.get(k)) for v in values]
            out.append({"key": k, "values": cells, "differs": len(set(cells)) > 1})
        return out

    keys = [k for k in (score(r)[0] for r in runs) if k]
    chart, metric = None, max(keys, key=keys.count) if keys else None  # the one most runs have
    if metric:
        items = [(str(r["id"]), m.get(metric)) for r, m in zip(runs, metrics, strict=True)]
        chart = Markup(charts.bars(items, title=f"{metric} of the compared runs"))  # noqa: S704
    return {"runs": runs, "params": rows(params), "metrics": rows(metrics), "chart": chart,
            "metric": metric}  # fmt: skip


@bp.get("/runs")
@needs("model.read")
def runs():
    app, actor = appliance(), request_actor()
    every = app.runs.list(actor)  # newest first
    model = request.args.get("model", "").strip()[:MAX_REF]
    trials: dict[str, int] = {}
    for r in every:
        if r.get("kind") == "trial" and r.get("parent"):
            trials[r["parent"]] = trials.get(r["parent"], 0) + 1
    # trials are many; they are listed on their search's page
    shown = [r for r in every if r.get("kind") != "trial" and (not model or r["model"] == model)]
    ids = [i.strip()[:MAX_REF] for v in request.args.getlist("compare") for i in v.split(",")]
    ids = list(dict.fromkeys(i for i in ids if i))
    if len(ids) > MAX_COMPARE:
        raise BadInput(f"compare: at most {MAX_COMPARE} runs at once, not {len(ids)}")
    return render_template(
        "runs.html",
        specs=_specs(app),
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
        runs=[r | {"score": score(r), "trials": trials.get(r["id"], 0)} for r in shown][:MAX_RUNS],
        total=len(shown),
        models=sorted({r["model"] for r in every}),
        model=model,
        compare=_compare(ids, actor) if ids else None,
        run=None,
    )


def _specs(app) -> dict[str, Any]:
    """The training specs of the home's workspace file (or why there are none)."""
    from appliance.features.workspace import load

    path = app.home / WORKSPACE_FILE
    if not path.exists():
        return {"names": [], "problem": None}
    try:
        ws = load(path)
    except FalajError as exc:
        return {"names": [], "problem": exc.message}
    return {"names": [(n, s.model_name, s.family) for n, s in ws.training.items()],
            "problem": None}  # fmt: skip


@bp.post("/runs/train")
@needs("model.train")
def train():
    """Run a workspace spec, as `falaj train --spec NAME` does, then show its version."""
    app, actor = appliance(), request_actor()
    spec = request.form.get("spec", "").strip()[:MAX_REF]
    try:
        r = app.training.train_spec(spec, app.home / WORKSPACE_FILE, actor)
    except FalajError as exc:
        return redirect(url_for("models.runs", done=exc.message[:500], ok="0") + "#train")
    failed = failed_gates(r["metrics"]["gates"])
    verdict = "gates passed" if not failed else f"rejected by its gates ({', '.join(failed)})"
    target = url_for("models.version", name=r["name"], version=r["version"],
                     done=f"trained {r['name']}@{r['version']} from spec {spec}: {verdict}",
                     ok="0" if failed else "1")  # fmt: skip
    return redirect(target)


@bp.get("/runs/<run_id>")
@needs("model.read")
def run(run_id: str):
    app, actor = appliance(), request_actor()
    found = app.runs.get(run_id[:MAX_REF], actor)  # NotFound: the 404 page
    children = app.runs.list(actor, parent=found["id"])
    trials = sorted(
        (t | {"number": _trial_number(t["id"], i), "flat": flat(t.get("metrics") or {})}
         for i, t in enumerate(reversed(children)) if t.get("kind") == "trial"),
        key=lambda t: t["number"],
    )  # fmt: skip
    metric = score(found)[0] if found.get("kind") == "search" else None
    metric = metric or next((score(t)[0] for t in trials if score(t)[0]), None)
    chart = None
    if metric and trials:
        chart = Markup(  # noqa: S704 -- every label escaped by charts
            charts.trial_scores(
                [t["flat"].get(metric) for t in trials],
                title=f"Validation {metric} of each trial, in order, and the best so far",
                metric=metric,
                higher_is_better=metric not in LOWER_IS_BETTER,
                labels=[f"{t['id']} ({t.get('status')})" for t in trials],
                first=min(t["number"] for t in trials),
            )
        )
    return render_template(
        "runs.html", run=found, trials=trials,
        fits=[c for c in children if c.get("kind") != "trial"], chart=chart, metric=metric,
        params=found.get("params") or {}, metrics=flat(found.get("metrics") or {}),
    )  # fmt: skip


def _trial_number(run_id: str, fallback: int) -> int:
    """A trial's number, from its id's -t<number> ending; else its place in time."""
    head, _, number = str(run_id).rpartition("-t")
    return int(number) if head and number.isdigit() else fallback
