"""The ``falaj`` command line: each command opens the appliance, calls one service
function and turns a domain error into one line on stderr and an exit status
(0 success, 1 a failed check, 2 bad usage or bad input)."""

from __future__ import annotations

import functools
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance import settings as settings_mod
from appliance.auth import Actor
from appliance.core import Appliance
from appliance.errors import BadInput, FalajError


def cli_actor() -> Actor:
    """Who runs the command: the local operator (whoever holds the master key, admin), or
    the named user of ``falaj --as USER``, with that user's role."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    if not obj or not obj.get("as_user"):
        return Actor("cli", getpass.getuser())
    if obj.get("as_actor") is None:
        if obj.get("app") is None:
            raise BadInput("--as: this command opens no home to find the user in")
        obj["as_actor"] = obj["app"].auth.user_actor(obj["as_user"])
    return obj["as_actor"]


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def service(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give the command an open Appliance and map domain errors to exit codes."""

    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        app = None
        try:
            app = Appliance.open(ctx.obj["overrides"], ctx.obj["config"])
            ctx.obj["app"] = app  # cli_actor() finds --as USER's role there
            return fn(app, *args, **kwargs)
        except FalajError as exc:
            fail(exc.message, exc.exit_code)
        except ValueError as exc:  # a setting that does not parse
            fail(str(exc), 2)
        except OSError as exc:  # the file system said no: an unwritable home, a full disk
            fail(os_error(exc), 2)
        finally:
            if app is not None:
                try:
                    app.close()
                except FalajError as exc:  # pending records that cannot be written
                    fail(exc.message, exc.exit_code)

    return wrapper


def setting_option(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command option for a setting, its type, choices, help and default taken from the
    settings table; left out, the setting's TOML, environment or default value holds."""
    s = settings_mod.BY_NAME[name]
    kind = click.Choice(s.choices) if s.choices else type(s.default)
    return click.option(
        f"--{name.replace('_', '-')}", name, type=kind, default=None,
        help=f"{s.help} [default: {s.default}; env {s.env}]",
    )  # fmt: skip


def overriding(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options for these settings, passed to the Appliance as overrides."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @click.pass_context
        def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
            ctx.obj["overrides"].update({n: kwargs.pop(n) for n in names})
            return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        wrapper.__click_params__ = list(getattr(fn, "__click_params__", []))  # type: ignore[attr-defined]
        for n in reversed(names):
            wrapper = setting_option(n)(wrapper)
        return wrapper

    return decorate


def emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(package_name="falaj")
@click.option(
    "--home",
    envvar="FALAJ_HOME",
    help=settings_mod.BY_NAME["home"].help + " [default: ./var; env FALAJ_HOME]",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default HOME/falaj.toml).",
)
@click.option(
    "--as",
    "as_user",
    metavar="USER",
    help="Act as this user, with their role (default: the local administrator).",
)
@click.pass_context
def cli(ctx: click.Context, home: str | None, config: str | None, as_user: str | None) -> None:
    """Falaj: an on-premises MLOps appliance.

    \b
    Example:
        falaj --home ./var init
        falaj ingest loans.csv --table loans --entity customer_id --timestamp event_time
        falaj train --table loans --label default --name credit
        falaj deploy credit --version 1
        falaj run
    """
    ctx.ensure_object(dict)
    ctx.obj["overrides"] = {"home": home}
    ctx.obj["config"] = config
    ctx.obj["as_user"] = as_user


@cli.command()
@json_option
@service
def init(app: Appliance, as_json: bool) -> None:
    """Create the home: master key, encrypted stores and their schemas.

    Running it again changes nothing.

    \b
    Example:
        falaj --home ./var init
    """
    result = app.init(cli_actor())
    text = f"{'initialised' if result['changed'] else 'already initialised, nothing changed'}: {result['home']}"
    emit(as_json, result, text)


@cli.command()
@overriding(
    "host", "port", "grpc_port", "threads", "device", "decision_log", "check_on_start",
    "demo_rows", "tls_cert", "tls_key", "log_format", "log_requests",
)  # fmt: skip
@click.option(
    "--demo", is_flag=True, help="On an empty home, load the credit-risk demo and deploy a model."
)
@click.option("--tls", "tls_on", is_flag=True,
              help="Serve HTTPS on loopback too (beyond loopback it always does).")  # fmt: skip
@service
def run(app: Appliance, demo: bool, tls_on: bool) -> None:
    """Serve the dashboard, the JSON API and the models.

    Creates the home first if it is empty, then reads every page of both stores
    (check_on_start) before it serves. Beyond loopback (--host 0.0.0.0) it serves only
    HTTPS, with tls_cert/tls_key or a self-signed certificate made in HOME/tls/.

    \b
    Example:
        falaj --home ./var run --demo --port 8080
        falaj run --host 0.0.0.0 --port 8443 --tls-cert cert.pem --tls-key key.pem
    """
    from appliance.ops import logs
    from webui import server

    logs.configure(app.settings["log_format"])  # plain text or one JSON object a line
    if tls_on:
        app.settings["tls"] = "on"

    server.start(app, demo=demo, actor=cli_actor())


@cli.command()
@json_option
@service
def check(app: Appliance, as_json: bool) -> None:
    """Read every page of both stores and check each against its checksum.

    Exits 2 naming the damaged store and page; 0 when both read clean.

    \b
    Example:
        falaj check
    """
    problems = app.check(cli_actor())
    emit(as_json, {"ok": True, "stores": problems}, "control.db: ok\nfeatures.duckdb: ok")


@cli.command()
@json_option
@service
def status(app: Appliance, as_json: bool) -> None:
    """Show the home, its tables, models, deployments and the audit chain's state.

    \b
    Example:
        falaj status --json
    """
    actor = cli_actor()
    v = app.audit.verify(actor)
    data = {
        "home": str(app.home),
        "tables": app.catalog.tables(actor),
        "models": [
            {"name": m["name"], "version": m["version"], "live": m["live"]}
            for m in app.registry.versions(actor)
        ],
        "audit": {"events": v.checked, "verified": v.ok},
    }
    lines = [
        f"home: {app.home}",
        f"audit chain: {v.checked} events, {'verified' if v.ok else 'BROKEN'}",
    ]
    lines += [f"table {t['table']}: {t['rows']} rows" for t in data["tables"]]
    lines += [
        f"model {m['name']}@{m['version']}{' (live)' if m['live'] else ''}" for m in data["models"]
    ]
    emit(as_json, data, "\n".join(lines))


@cli.command()
@click.argument("ref")
@click.option("--version", "version", type=int, help="Registered version to deploy.")
@click.option("--force", is_flag=True,
              help="Deploy a version its gates rejected (audited as a forced deploy).")  # fmt: skip
@json_option
@service
def deploy(app: Appliance, ref: str, version: int | None, force: bool, as_json: bool) -> None:
    """Verify a version's bundle, load it into the idle slot and switch traffic to it.

    REF is NAME with --version, or NAME@VERSION, NAME@ALIAS, models:/NAME/VERSION or
    models:/NAME@ALIAS. All or nothing: a version whose bundle fails verification
    changes nothing. A version rejected by its gates needs --force.

    \b
    Example:
        falaj deploy credit --version 2
        falaj deploy models:/credit@champion
    """
    actor = cli_actor()
    if version is not None:
        if "@" in ref or "/" in ref:
            raise BadInput(f"{ref!r} names a version already; leave out --version")
        ref = f"{ref}@{version}"
    elif "@" not in ref and "/" not in ref:
        raise BadInput(f"give the version: {ref}@VERSION, {ref}@ALIAS or --version N")
    name, version = app.registry.resolve(ref, actor)
    r = app.serving.deploy(name, version, actor, force=force)
    emit(as_json, r, f"{name}@{version} is live in the {r['slot']} slot")


@cli.command()
@click.argument("name")
@json_option
@service
def rollback(app: Appliance, name: str, as_json: bool) -> None:
    """Switch traffic back to the other slot (the previously live version).

    The bundle is verified again first. Running it twice rolls forward again.

    \b
    Example:
        falaj rollback credit
    """
    r = app.serving.rollback(name, cli_actor())
    emit(
        as_json,
        r,
        f"{name}@{r['version']} is live again in the {r['slot']} slot (was {r['previous_version']})",
    )


@cli.command()
@click.argument("name")
@click.option("--input", "input_file", required=True, type=click.Path(path_type=Path),
              help='JSON file: {"records": [...]} or a list of records.')  # fmt: skip
@service
def predict(app: Appliance, name: str, input_file: Path) -> None:
    """Score records with the live version of a deployed model (prints JSON).

    The input holds {"records": [{feature: value}, ...]}, or, for a model trained on
    feature views, {"entities": [{"customer_id": "c1"}, ...]}.

    \b
    Example:
        falaj predict credit --input applicants.json
    """
    try:
        body = json.loads(input_file.read_text())
    except FileNotFoundError:
        raise BadInput(f"{input_file}: no such file") from None
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise BadInput(f"{input_file}: not valid JSON: {exc}") from None
    if isinstance(body, dict) and "entities" in body:
        click.echo(json.dumps(app.serving.predict_entities(name, body["entities"], cli_actor())))
        return
    records = body.get("records") if isinstance(body, dict) else body
    click.echo(json.dumps(app.serving.predict(name, records, cli_actor())))


@cli.group()
def decisions() -> None:
    """The decision log: every prediction the appliance answered.

    \b
    Example:
        falaj decisions get 3f2a…
    """


@decisions.command("get")
@click.argument("request_id")
@json_option
@service
def decisions_get(app: Appliance, request_id: str, as_json: bool) -> None:
    """Show a logged decision by its request id, and whether its batch's records still
    hash to what their audit event committed to.

    \b
    Example:
        falaj decisions get 0c5e8f0f9a4b4c8e9d1f2a3b4c5d6e7f --json
    """
    d = app.serving.decision(request_id, cli_actor())
    text = (
        f"{d['request_id']}: {d['model']}@{d['version']} ({d['slot']}) at {d['at']} for "
        f"{d['actor']}: {', '.join(f'{o:.6f}' for o in d['outputs'])}; batch {d['batch']}, "
        f"audit event {d['audit_seq']}, {'proved' if d['verified'] else 'NOT PROVED'}"
    )
    if d.get("variant") is not None:
        text += f"\nvariant: {d['variant']}"
    for i, inputs in enumerate(d.get("inputs") or []):
        if inputs is not None:
            text += f"\ninputs[{i}]: " + ", ".join(f"{k}={v}" for k, v in inputs.items())
    emit(as_json, d, text)
    if not d["verified"]:
        sys.exit(1)


decisions.add_command(decisions_get, "show")  # the same command, by the name of `models show`


@decisions.command("prune")
@json_option
@service
def decisions_prune(app: Appliance, as_json: bool) -> None:
    """Delete whole decision batches older than the decision_retention_days setting (0:
    keep forever); their audit events stay in the chain, and one decisions.pruned event
    names the batches. `falaj run` does this once a day.

    \b
    Example:
        FALAJ_DECISION_RETENTION_DAYS=90 falaj decisions prune --json
    """
    got = app.decision_log.prune(cli_actor())
    if not got["retention_days"]:
        text = "decision_retention_days is 0: the log keeps decisions forever; nothing pruned"
    else:
        text = (f"pruned {got['batches']} batches ({got['rows']} decisions) committed more "
                f"than {got['retention_days']} days ago")  # fmt: skip
    emit(as_json, got, text)


@cli.group("audit")
def audit_group() -> None:
    """The audit chain: verify, tail, signed checkpoints, proofs, export.

    \b
    Example:
        falaj audit verify
    """


@audit_group.command("verify")
@click.option(
    "--full", is_flag=True, help="Re-hash every event, not only those since the last verification."
)
@click.option("--against", type=click.Path(exists=True, path_type=Path), default=None,
              help="A copy of the checkpoint log kept off the box (audit checkpoint --copy-to): "
                   "the home's log must extend it.")  # fmt: skip
@json_option
@service
def audit_verify(app: Appliance, full: bool, against: Path | None, as_json: bool) -> None:
    """Verify the chain; exit 1 naming the first event that does not verify.

    Re-hashes the events added since the last verification after checking that the
    last verified one is unchanged; --full re-hashes all. Then holds the store against
    the latest signed checkpoint: a cut tail, missing events or a file rolled back to
    an older copy fail (--full also recomputes every checkpoint's Merkle root). With
    --against, a home whose store and log were both put back fails too.

    \b
    Example:
        falaj audit verify --full --against /media/usb/checkpoints.log
    """
    v = app.audit.verify(cli_actor(), full=full, against=against)
    data = {"checked": v.checked, "hashed": v.hashed, "ok": v.ok, "first_bad": v.first_bad,
            "reason": v.reason, "checkpoint": v.checkpoint}  # fmt: skip
    if v.ok:
        against = "" if v.checkpoint is None else f"; matches signed checkpoint {v.checkpoint}"
        emit(as_json, data, f"audit chain verified: {v.checked} events ({v.hashed} hashed now)"
                            + against)  # fmt: skip
    else:
        if as_json:
            emit(True, data, "")
        fail(
            f"audit chain broken at event {v.first_bad}: {v.reason} ({v.checked} events verified before it)",
            1,
        )


@audit_group.command("tail")
@click.option("-n", "count", type=int, default=None,
              help=f"How many events [default: the audit_tail setting, {settings_mod.BY_NAME['audit_tail'].default}].")  # fmt: skip
@json_option
@service
def audit_tail(app: Appliance, count: int | None, as_json: bool) -> None:
    """Show the latest audit events, newest last.

    \b
    Example:
        falaj audit tail -n 5
    """
    rows = list(reversed(app.audit.tail(count or app.settings["audit_tail"], cli_actor())))
    lines = [
        f"{r['seq']:>6}  {r['ts']}  {r['actor']:<18} {r['action']:<16} {r['subject']}  {json.dumps(r['details'])}"
        for r in rows
    ]
    emit(as_json, rows, "\n".join(lines) or "no events")


@cli.command("demo-data")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=settings_mod.BY_NAME["demo_rows"].default,
    show_default=True,
    help="Rows to generate.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
def demo_data(out: Path, rows: int, seed: int) -> None:
    """Write the synthetic credit-risk data set (Parquet, or CSV for a .csv name).

    Customers' loan applications over a year: numeric and categorical features, a
    sensitive attribute (gender), a 0/1 `default` label with real signal, and a drift
    in the last three months.

    \b
    Example:
        falaj demo-data loans.parquet --rows 20000
    """
    from appliance import demo

    demo.write(out, rows, seed)
    click.echo(f"wrote {rows} rows to {out}")


@cli.command("settings")
@json_option
@click.pass_context
def settings_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show every setting, its value, and where to set it.

    \b
    Example:
        falaj settings
    """
    try:
        values = settings_mod.load(ctx.obj["overrides"], ctx.obj["config"])
    except ValueError as exc:
        fail(str(exc), 2)
    lines = [
        f"{s.name:<18} {values[s.name]!s:<24} {s.env}: {s.help}" for s in settings_mod.SETTINGS
    ]
    emit(as_json, values, "\n".join(lines))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the kernel benchmarks (the same as python -m benchmarks).

    Results go to ./benchmark-results (or --out DIR), never into the installed package.

    \b
    Example:
        falaj bench --quick
    """
    from benchmarks.__main__ import main as bench_main

    sys.exit(bench_main(list(args)))


# Each module below adds its commands to ``cli``; imported last, after the helpers above.
import appliance.cli.audit_commands  # noqa: E402, F401
import appliance.cli.auth_commands  # noqa: E402, F401
import appliance.cli.compliance_commands  # noqa: E402, F401
import appliance.cli.data_commands  # noqa: E402, F401
import appliance.cli.feature_commands  # noqa: E402, F401
import appliance.cli.install_commands  # noqa: E402, F401
import appliance.cli.key_commands  # noqa: E402, F401
import appliance.cli.model_commands  # noqa: E402, F401
import appliance.cli.monitor_commands  # noqa: E402, F401
import appliance.cli.online_commands  # noqa: E402, F401
import appliance.cli.ops_commands  # noqa: E402, F401
import appliance.cli.pipeline_commands  # noqa: E402, F401
import appliance.cli.release_commands  # noqa: E402, F401


def main() -> None:
    cli(prog_name="falaj")
