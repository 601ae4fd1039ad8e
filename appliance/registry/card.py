"""The model card of a version, as Markdown and as a standalone HTML page.

Both come from one list of sections (a title, paragraphs and tables of plain strings),
so the two formats always say the same thing. ``info`` is what ``Registry.card_info``
gives: the version's row, its inputs, lineage and metrics. Anything a bundle lacks (no
sensitive attribute, a regression task, an older bundle whose gates are booleans without
"results") is said to be missing, never an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

BINARY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")
METRIC_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "log_loss": "log loss",
                "brier": "Brier score", "accuracy": "accuracy", "f1": "F1", "rmse": "RMSE",
                "mae": "MAE", "r2": "R²", "rows": "rows"}  # fmt: skip
# Lineage keys in the order a reader wants them, with their labels; others follow as given.
LINEAGE = {"source": "source", "training_set": "training set", "table": "source table",
           "tables": "tables", "table_fingerprints": "table fingerprints",
           "data_fingerprint": "data fingerprint", "views": "view versions",
           "view_versions": "view versions", "label": "label", "rows": "rows",
           "time_range": "time range", "split": "split", "features": "features",
           "roles": "roles", "code_version": "code version", "seed": "seed", "device": "device"}  # fmt: skip
TIME_RANGE = ("event_time_from_us", "event_time_to_us")  # microseconds since the epoch, UTC
NONE = "—"
OPS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">"}  # a gate's comparison, as a reader writes it


@dataclass
class Section:
    title: str
    id: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)


def cell(value: Any) -> str:
    """A value as table text: floats to 4 decimals, dicts and lists compact, None a dash."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "n/a"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {cell(v)}" for k, v in value.items()) or NONE
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or NONE
    return str(value)


def metric_keys(task: str | None, *blocks: dict | None) -> list[str]:
    """The metrics to show: the task's, in their usual order, that any block has."""
    keys = REGRESSION_METRICS if task == "regression" else BINARY_METRICS
    return [k for k in ("rows", *keys) if any(b and k in b for b in blocks)]


def gate_rows(gates: Any) -> list[dict[str, Any]]:
    """Each gate as {gate, metric, value, op, threshold, passed, detail}; older bundles
    kept only a pass/fail per gate name, which becomes a row without a value."""
    if not isinstance(gates, dict):
        return []
    results = gates.get("results")
    if isinstance(results, list):
        return [r for r in results if isinstance(r, dict)]
    return [{"gate": k, "passed": v} for k, v in gates.items() if k != "passed"]


def _verdict(passed: Any) -> str:
    return {True: "pass", False: "FAIL"}.get(passed, NONE)


def sections(info: dict[str, Any]) -> list[Section]:
    metrics = info.get("metrics") or {}
    task = info.get("task") or metrics.get("task")
    lineage = info.get("lineage") or {}
    out = [_intended_use(info), _details(info, lineage, task), _data(lineage)]
    out += [_inputs(info), _metrics(metrics, task), _gates(metrics.get("gates"))]
    out += [_fairness(metrics.get("fairness")), _calibration(metrics.get("holdout") or {}, task)]
    robustness = metrics.get("robustness")
    if isinstance(robustness, dict) and robustness:
        out.append(_robustness(robustness))
    return out


def _intended_use(info: dict) -> Section:
    use = info.get("intended_use") or (
        "Not stated. Say what decisions this model supports, for whom, and what it must "
        "not be used for, in the training spec's intended_use."
    )
    return Section("Intended use", "intended-use", [use])


def _details(info: dict, lineage: dict, task: str | None) -> Section:
    params = info.get("params")
    rows = [
        ["Name", cell(info.get("name"))],
        ["Version", cell(info.get("version"))],
        ["Status", cell(info.get("status"))],
        ["Family", cell(info.get("family"))],
        ["Task", cell(task)],
        ["Parameters", json.dumps(params, sort_keys=True) if params else NONE],
        ["Seed", cell(info.get("seed", lineage.get("seed")))],
        ["Device", cell(info.get("device", lineage.get("device")))],
        ["Created", f"{cell(info.get('created_at'))} by {cell(info.get('created_by'))}"],
        ["Aliases", cell(info.get("aliases") or None)],
    ]
    return Section("Model details", "details", tables=[(["", ""], rows)])


def _utc(us: Any) -> str:
    if isinstance(us, bool) or not isinstance(us, int):
        return cell(us)
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")


def _data(lineage: dict) -> Section:
    if all(k in lineage for k in TIME_RANGE) and "time_range" not in lineage:
        lo, hi = (_utc(lineage[k]) for k in TIME_RANGE)
        lineage = {k: v for k, v in lineage.items() if k not in TIME_RANGE}
        lineage["time_range"] = f"{lo} to {hi}"
    keys = [k for k in LINEAGE if k in lineage] + [k for k in lineage if k not in LINEAGE]
    seen, rows = set(), []
    for k in keys:
        label = LINEAGE.get(k, k.replace("_", " "))
        if label not in seen or k not in LINEAGE:
            seen.add(label)
            rows.append([label, cell(lineage[k])])
    if not rows:
        return Section("Data", "data", ["No lineage recorded."])
    return Section("Data", "data", tables=[(["", ""], rows)])


def _inputs(info: dict) -> Section:
    inputs = info.get("inputs") or []
    rows = [[cell(i.get("name")), cell(i.get("role")), cell(i.get("type"))] for i in inputs]
    s = Section("Inputs", "inputs", tables=[(["Name", "Role", "Type"], rows)] if rows else [])
    if not rows:
        s.paragraphs.append("No inputs recorded.")
    sensitive = info.get("sensitive")
    if sensitive:
        s.paragraphs.append(
            f"Sensitive attribute: {sensitive}. It is not a model input; it is kept only to "
            "measure fairness across its groups."
        )
    else:
        s.paragraphs.append("No sensitive attribute was named, so fairness was not measured.")
    return s


def _metrics(metrics: dict, task: str | None) -> Section:
    holdout, train = metrics.get("holdout"), metrics.get("train")
    baseline, champion = metrics.get("baseline"), metrics.get("champion")
    columns = [("hold-out", holdout), ("train", train)]
    if isinstance(baseline, dict):
        columns.append((f"baseline ({baseline.get('kind', 'baseline')})", baseline))
    if isinstance(champion, dict):
        columns.append((f"champion v{champion.get('version')}", champion.get("holdout")))
    columns = [(name, b) for name, b in columns if isinstance(b, dict)]
    keys = metric_keys(task, *(b for _, b in columns))
    if not keys:
        return Section("Metrics", "metrics", ["No metrics recorded."])
    rows = [[METRIC_NAMES.get(k, k), *(cell(b.get(k)) for _, b in columns)] for k in keys]
    s = Section("Metrics", "metrics", tables=[(["Metric", *(n for n, _ in columns)], rows)])
    if isinstance(holdout, dict) and "threshold" in holdout:
        s.paragraphs.append(f"Accuracy and F1 at the threshold {cell(holdout['threshold'])}.")
    if champion is None and "champion" in metrics:
        s.paragraphs.append("No champion to compare with when this version was trained.")
    return s


def _gates(gates: Any) -> Section:
    rows = gate_rows(gates)
    if not rows:
        return Section("Gates", "gates", ["No gates were evaluated."])
    passed = gates.get("passed") if isinstance(gates, dict) else None
    verdict = {True: ["Every gate passed."], False: ["At least one gate failed: rejected."]}
    table = [
        [cell(r.get("gate")), cell(r.get("metric")), cell(r.get("value")),
         f"{OPS.get(r.get('op'), '')} {cell(r['threshold'])}".strip()
         if r.get("threshold") is not None else NONE,
         _verdict(r.get("passed")), cell(r.get("detail"))]
        for r in rows
    ]  # fmt: skip
    headers = ["Gate", "Metric", "Value", "Threshold", "Result", "Detail"]
    paragraphs = verdict[passed] if isinstance(passed, bool) else []
    return Section("Gates", "gates", paragraphs, [(headers, table)])


def _fairness(fairness: Any) -> Section:
    if not isinstance(fairness, dict):
        return Section("Fairness", "fairness", ["Not measured: no sensitive attribute."])
    s = Section("Fairness", "fairness")
    s.paragraphs.append(
        f"Across {cell(fairness.get('sensitive'))}: demographic parity difference "
        f"{cell(fairness.get('demographic_parity_difference'))}, equalized odds difference "
        f"{cell(fairness.get('equalized_odds_difference'))}."
    )
    groups = [g for g in fairness.get("groups") or [] if isinstance(g, dict)]
    keys = ("count", "selection_rate", "tpr", "fpr", "roc_auc")
    names = ["Count", "Selection rate", "TPR", "FPR", "ROC AUC"]
    rows = [[cell(g.get("group")), *(cell(g.get(k)) for k in keys)] for g in groups]
    if rows:
        s.tables.append((["Group", *names], rows))
    return s


def _calibration(holdout: dict, task: str | None) -> Section:
    bins = [b for b in holdout.get("calibration") or [] if isinstance(b, dict)]
    if not bins:
        why = "not applicable to regression" if task == "regression" else "no calibration table"
        return Section("Calibration", "calibration", [f"None: {why}."])
    rows = [[cell(b.get("bin")), f"{cell(b.get('lo'))} – {cell(b.get('hi'))}",
             cell(b.get("count")), cell(b.get("mean_predicted")), cell(b.get("observed_rate"))]
            for b in bins]  # fmt: skip
    s = Section("Calibration", "calibration")
    if "ece" in holdout:
        s.paragraphs.append(f"Expected calibration error: {cell(holdout['ece'])}.")
    s.tables.append((["Bin", "Range", "Count", "Mean predicted", "Observed rate"], rows))
    return s


def _robustness(robustness: dict) -> Section:
    keys = ("mean_abs_change", "max_abs_change", "flip_rate")
    rows = [[k, *(cell(v.get(x)) for x in keys)] for k, v in robustness.items()
            if isinstance(v, dict)]  # fmt: skip
    headers = ["Perturbation", "Mean |change|", "Max |change|", "Flip rate"]
    return Section("Robustness", "robustness", tables=[(headers, rows)])


# -- Markdown ----------------------------------------------------------------------------


def _md(text: str) -> str:
    """Text that a Markdown renderer shows as written: no table breaks, no HTML."""
    text = " ".join(str(text).split())
    for ch in "\\|*_`[]#":
        text = text.replace(ch, "\\" + ch)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(info: dict[str, Any]) -> str:
    title = f"Model card: {info.get('name')} v{info.get('version')}"
    lines = [f"# {_md(title)}", ""]
    for s in sections(info):
        lines += [f"## {s.title}", ""]
        for p in s.paragraphs:
            lines += [_md(p), ""]
        for headers, rows in s.tables:
            lines.append("| " + " | ".join(_md(h) for h in headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


# -- HTML --------------------------------------------------------------------------------

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2a2e; max-width: 960px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; border-bottom: 1px solid #e3ded3; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #e3ded3; }
th { font-size: 12px; text-transform: uppercase; color: #66737a; }
.status-rejected { color: #c62828; } .pass { color: #2e7d32; } .fail { color: #c62828; }
"""


def _html_cell(text: str) -> str:
    cls = {"pass": ' class="pass"', "FAIL": ' class="fail"'}.get(text, "")
    return f"<td{cls}>{escape(text)}</td>"


def html(info: dict[str, Any]) -> str:
    """A complete HTML document with its CSS inline: it can be saved and mailed as is."""
    e = escape
    title = f"Model card: {info.get('name')} v{info.get('version')}"
    status = str(info.get("status") or "")
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
           f'<h1>{e(title)} <span class="status-{e(status)}">({e(status)})</span></h1>'
           if status else f"<h1>{e(title)}</h1>"]  # fmt: skip
    for s in sections(info):
        out.append(f'<section id="{s.id}"><h2>{e(s.title)}</h2>')
        out += [f"<p>{e(p)}</p>" for p in s.paragraphs]
        for headers, rows in s.tables:
            out.append("<table>")
            if any(headers):
                out.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers))
                out.append("</tr></thead>")
            out.append("<tbody>")
            out += ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows]
            out.append("</tbody></table>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
