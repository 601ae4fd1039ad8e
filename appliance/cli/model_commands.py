"""``falaj train`` and ``falaj models …``: training runs, versions, aliases, model cards
and ONNX export. A model is named as NAME, NAME@VERSION, NAME@ALIAS,
models:/NAME/VERSION or models:/NAME@ALIAS wherever a command takes one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from appliance.cli import cli, cli_actor, emit, json_option, overriding, service
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.features.views import WORKSPACE_FILE
from appliance.training.gates import failed_gates
from appliance.training.specs import ROLES, SPLIT_KINDS, STRATEGIES, parse_search


@contextmanager
def trial_bar() -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar of search trials on stderr while it is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("search"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as bar:  # fmt: skip
        task = bar.add_task("search", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _roles(values: tuple[str, ...]) -> dict[str, str]:
    roles = {}
    for v in values:
        col, eq, role = v.partition("=")
        if not eq or role not in ROLES:
            raise BadInput(
                f"--role {v!r}: expected COLUMN=ROLE with ROLE one of {', '.join(ROLES)}"
            )
        roles[col] = role
    return roles


def _summary(r: dict) -> str:
    h, task = r["metrics"]["holdout"], r["task"]
    scores = (f"ROC AUC {h['roc_auc']:.4f}, log loss {h['log_loss']:.4f}, F1 {h['f1']:.4f}"
              if task == "binary" else f"RMSE {h['rmse']:.4g}, MAE {h['mae']:.4g}, R² {h['r2']:.4f}")  # fmt: skip
    failed = failed_gates(r["metrics"]["gates"])
    verdict = "gates passed" if not failed else f"REJECTED by gates: {', '.join(failed)}"
    return f"{r['name']}@{r['version']} ({r['family']}): hold-out {scores}; {verdict}"


@cli.command()
@click.option(
    "--spec", "spec_name", help="Training spec declared in the workspace's training: section."
)
@click.option("--workspace", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Workspace file with the spec [default: HOME/{WORKSPACE_FILE}].")  # fmt: skip
@click.option("--table", help="Feature table to train from.")
@click.option("--training-set", "training_set",
              help="Registered training set (its id or its file) to train from.")  # fmt: skip
@click.option("--label", help="Label column: 0/1 for classification, numbers for regression.")
@click.option("--name", help="Model name to register the version under.")
@click.option("--family", type=click.Choice(["linear", "gbt", "mlp"]), default=None,
              help="Model family [default: linear].")  # fmt: skip
@click.option("--task", type=click.Choice(["binary", "regression"]), default=None,
              help="[default: binary when the label holds only 0 and 1].")  # fmt: skip
@click.option(
    "--features", help="Comma-separated input columns [default: every column but keys and label]."
)
@click.option("--role", "roles", multiple=True, metavar="COL=ROLE",
              help=f"Override a column's inferred role ({', '.join(ROLES)}); repeatable.")  # fmt: skip
@click.option("--sensitive", help="Sensitive attribute: kept for the fairness gates, not an input.")
@click.option("--split", type=click.Choice(SPLIT_KINDS), default=None, help="[default: time].")
@click.option("--search", "strategy", type=click.Choice(STRATEGIES), default=None,
              help="Search the family's hyperparameters.")  # fmt: skip
@click.option(
    "--trials", type=click.IntRange(1, 10_000), default=None, help="Search trials [default: 20]."
)
@click.option("--timeout", default=None, help="Search time limit, like 10m.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None, help="[default: 0].")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold for accuracy, F1 and fairness [default: 0.5].")  # fmt: skip
@overriding("holdout_fraction", "l2_c")
@json_option
@service
def train(app: Appliance, spec_name, workspace, table, training_set, label, name, family, task,
          features, roles, sensitive, split, strategy, trials, timeout, seed, threshold,
          as_json) -> None:  # fmt: skip
    """Train a model, evaluate it on a hold-out, gate it and register the version.

    From a spec in the workspace (--spec), or from flags: a feature table (--table) or a
    point-in-time training set (--training-set), whose models are served by entity id.
    Every column becomes an input by its role (numeric, categorical, datetime; ids are
    left out), through one fitted pipeline the bundle carries. A version that fails a
    gate (baseline, champion, fairness, robustness, calibration) is registered as
    rejected, and the command exits 1.

    \b
    Example:
        falaj train --spec credit_risk
        falaj train --table loans --label default --name credit --family gbt \\
            --sensitive gender --search halving --trials 18
        falaj train --training-set 3f2a9c1d --label default --name credit
    """
    actor = cli_actor()
    with trial_bar() as progress:
        if spec_name is not None:
            if table or training_set or label or name:
                raise BadInput("--spec takes its source, label and name from the spec; "
                               "give either --spec or --table/--training-set with --label and --name")  # fmt: skip
            r = app.training.train_spec(spec_name, workspace or app.home / WORKSPACE_FILE, actor,
                                        progress)  # fmt: skip
        else:
            if (table is None) == (training_set is None):
                raise BadInput("give --spec NAME, or either --table or --training-set")
            if label is None or name is None:
                raise BadInput("--label and --name are needed with --table or --training-set")
            search = None
            if strategy or trials or timeout:
                search = parse_search({k: v for k, v in {"strategy": strategy or "random",
                                      "trials": trials, "timeout": timeout,
                                      "seed": seed}.items() if v is not None}, "--search")  # fmt: skip
            options = {"family": family, "task": task, "sensitive": sensitive, "split": split,
                       "search": search, "seed": seed, "threshold": threshold,
                       "roles": _roles(roles) or None,
                       "features": tuple(f.strip() for f in features.split(",")) if features else None}  # fmt: skip
            if table is not None:
                r = app.training.train(table, label, name, actor, progress=progress, **options)
            else:
                r = app.training.train_on_set(training_set, label, name, actor,
                                              progress=progress, **options)  # fmt: skip
    if as_json:
        emit(True, r, "")
    else:
        click.echo(r["version"])
        click.echo(_summary(r), err=True)
    if not r["gates_passed"]:
        sys.exit(1)


@cli.group()
def models() -> None:
    """Registered models: list, show, verify, aliases, runs, cards and export.

    \b
    Example:
        falaj models list
    """


@models.command("list")
@json_option
@service
def models_list(app: Appliance, as_json: bool) -> None:
    """List every registered version: status, aliases and the hold-out's headline metric.

    \b
    Example:
        falaj models list --json
    """
    rows = app.registry.versions(cli_actor())
    lines = []
    for m in rows:
        h = m["metrics"]["holdout"]
        score = f"auc={h['roc_auc']:.4f}" if "roc_auc" in h else f"rmse={h.get('rmse', 0):.4g}"
        tags = [m["status"], *(f"@{a}" for a in m["aliases"]), *(["live"] if m["live"] else [])]
        lines.append(f"{m['name']}@{m['version']}  {score}  {m['created_at']}  {' '.join(tags)}")
    emit(as_json, rows, "\n".join(lines) or "no models registered")


@models.command("show")
@click.argument("ref")
@service
def models_show(app: Appliance, ref: str) -> None:
    """Show one version's record as JSON (any model reference; NAME is the latest).

    \b
    Example:
        falaj models show models:/credit@champion
    """
    actor = cli_actor()
    name, version = app.registry.resolve(ref, actor)
    row = app.registry.version(name, version, actor)
    row["aliases"] = app.registry.aliases_of(name, version, actor)
    click.echo(json.dumps(row, indent=2))


@models.command("verify")
@click.argument("ref")
@service
def models_verify(app: Appliance, ref: str) -> None:
    """Check a version's bundle: signature, manifest and every file's SHA-256.

    Exits 1 naming the first file that does not match.

    \b
    Example:
        falaj models verify credit@1
    """
    name, version = app.registry.resolve(ref, cli_actor())
    files = app.registry.verify(name, version, cli_actor())
    click.echo(f"{name}@{version}: bundle verified ({len(files)} files)")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove the alias instead.")
@json_option
@service
def models_alias(app: Appliance, name: str, alias: str, version: int | None, delete: bool,
                 as_json: bool) -> None:  # fmt: skip
    """Point ALIAS (champion, challenger, any name) at VERSION, or --delete it. Audited.

    \b
    Example:
        falaj models alias credit champion 3
        falaj models alias credit challenger --delete
    """
    actor = cli_actor()
    if delete:
        r = app.registry.delete_alias(name, alias, actor)
        emit(as_json, r, f"{name}@{alias} removed (it named version {r['previous_version']})")
        return
    if version is None:
        raise BadInput("give the VERSION the alias should name (or --delete)")
    r = app.registry.set_alias(name, alias, version, actor)
    moved = f" (was {r['previous_version']})" if r["previous_version"] is not None else ""
    emit(as_json, r, f"models:/{name}@{alias} -> version {version}{moved}")


@models.command("card")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@service
def models_card(app: Appliance, ref: str, fmt: str, out: Path | None) -> None:
    """The model card of a version: intended use, data, metrics, gates, fairness.

    \b
    Example:
        falaj models card credit@champion --format html --out card.html
    """
    actor = cli_actor()
    name, version = app.registry.resolve(ref, actor)
    text = app.registry.card(name, version, actor, fmt)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")


@models.command("runs")
@click.argument("name", required=False)
@click.option(
    "--search", "parent", help="Only the runs of this search: its trials and its final fit."
)
@json_option
@service
def models_runs(app: Appliance, name: str | None, parent: str | None, as_json: bool) -> None:
    """Training runs, newest first: searches, their trials and final fits.

    \b
    Example:
        falaj models runs credit
    """
    rows = app.runs.list(cli_actor(), model=name, parent=parent)
    lines = []
    for r in rows:
        m = r["metrics"]
        score = next((f"{k}={v:.4f}" for k, v in m.items() if k in ("roc_auc", "rmse")
                      and isinstance(v, float)), "")  # fmt: skip
        if not score and isinstance(m.get("holdout"), dict):
            h = m["holdout"]
            score = f"auc={h['roc_auc']:.4f}" if "roc_auc" in h else f"rmse={h.get('rmse', 0):.4g}"
        version = f" v{r['version']}" if r["version"] else ""
        lines.append(f"{r['id']}  {r['kind']:<6} {r['model']}{version}  {r['family'] or '':<6} "
                     f"{r['status']:<10} {score}  {r['duration_s']:.2f}s")  # fmt: skip
    emit(as_json, rows, "\n".join(lines) or "no runs")


@models.command("export")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@json_option
@service
def models_export(app: Appliance, ref: str, fmt: str, out: Path, as_json: bool) -> None:
    """Export a version, its whole fitted pipeline included (it takes the raw columns),
    as ONNX; linear and tree models.

    \b
    Example:
        falaj models export credit@3 --format onnx --out credit.onnx
    """
    actor = cli_actor()
    name, version = app.registry.resolve(ref, actor)
    r = app.registry.export(name, version, out, actor)
    emit(as_json, r, f"wrote {out} ({r['bytes']:,} bytes; inputs: {', '.join(r['inputs'])})")
