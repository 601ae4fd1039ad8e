"""The layout: one subpackage per layer, SQL only in the store layer, a core that imports
no web or CLI code, and services usable without the Appliance facade."""

import ast
import re
from pathlib import Path

import pytest

from appliance import keys
from appliance.auth import Actor, Forbidden, require
from appliance.ingest import IngestService
from appliance.stores import ControlStore, FeatureStore

ROOT = Path(__file__).parent.parent
APPLIANCE = ROOT / "appliance"
LAYERS = ["stores", "ingest", "features", "training", "registry", "serving", "monitoring",
          "scheduler", "audit", "auth", "compliance"]  # fmt: skip
SQL = re.compile(
    r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
    r"|DROP\s+TABLE|ALTER\s+TABLE|PRAGMA\s+\w+)\b",
    re.IGNORECASE | re.DOTALL,
)


def strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef) and n.body
        and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }  # fmt: skip
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings:
            out.append(n.value)
        elif isinstance(n, ast.JoinedStr):
            out.append("".join(v.value for v in n.values if isinstance(v, ast.Constant)) + " x")
    return out


def test_one_subpackage_per_layer():
    for layer in LAYERS:
        assert (APPLIANCE / layer / "__init__.py").is_file(), f"appliance/{layer}/ is missing"


def test_sql_lives_only_in_the_store_layer():
    offenders = [
        f"{p.relative_to(ROOT)}: {s[:60]!r}"
        for p in APPLIANCE.rglob("*.py")
        if "stores" not in p.parts
        for s in strings(p)
        if SQL.search(s)
    ]
    assert offenders == []


def test_the_sql_detector_sees_sql():
    # the check above must be able to fail
    found = [s for s in strings(APPLIANCE / "stores" / "control.py") if SQL.search(s)]
    assert len(found) > 10


def test_the_core_imports_no_web_or_cli_code():
    for p in APPLIANCE.rglob("*.py"):
        if p.name == "__main__.py" or "cli" in p.relative_to(APPLIANCE).parts:
            continue
        tree = ast.parse(p.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        bad = [
            m
            for m in names
            if m.split(".")[0] in ("webui", "click", "flask", "waitress", "cheroot")
        ]
        bad += [m for m in names if m.startswith("appliance.cli")]
        assert bad == [], f"{p.relative_to(ROOT)} imports {bad}"


def test_a_layer_works_without_the_facade(tmp_path):
    """Ingest with two stores and no Appliance: what a layer's unit test looks like."""
    master = keys.create_key(tmp_path / "master.key")
    control = ControlStore(tmp_path / "c.db", keys.derive(master, "control.db"), create=True)
    features = FeatureStore(tmp_path / "f.duckdb", keys.derive(master, "features.duckdb"),
                            create=True)  # fmt: skip
    control.migrate()
    features.migrate()
    path = tmp_path / "a.csv"
    path.write_text("id,ts,x\n1,2025-01-01,2.5\n2,2025-01-02,3.5\n")
    service = IngestService(features, control)
    actor = Actor("test", "layers")
    r = service.ingest(path, "t", "id", "ts", actor)
    assert (r["rows"], r["columns"]) == (2, {"id": "BIGINT", "ts": "TIMESTAMP", "x": "DOUBLE"})
    [event] = control.audit_tail(1)
    assert (event["action"], event["subject"], event["details"]["batch"]) == (
        "data.ingest", "t", r["batch"])  # fmt: skip
    with pytest.raises(Forbidden):
        service.ingest(path, "t", "id", "ts", "somebody")  # not an Actor
    with pytest.raises(KeyError):
        require(actor, "no.such.permission")
    features.close()
    control.close()
