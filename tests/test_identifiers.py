"""Column names from files reach SQL quoted, whatever they hold, or are refused with
one line naming them."""

import json

import pytest

from tests.conftest import ACTOR

HOSTILE = [
    'a"; DROP TABLE x; --',
    "loan amount",
    "select",
    "rate;",
    "revenu_été",
    "收入",
    "it's",
    "a.b",
]


def test_hostile_headers_work_quoted_everywhere(falaj, tmp_path, app):
    header = ",".join(['"' + h.replace('"', '""') + '"' for h in HOSTILE])
    lines = ["id,ts,y," + header]
    for i in range(40):
        values = [str(i * 1.5 + j) for j in range(len(HOSTILE))]
        lines.append(f"{i},2025-01-{1 + i % 28:02d},{i % 2}," + ",".join(values))
    path = tmp_path / "hostile.csv"
    path.write_text("\n".join(lines) + "\n")
    r = app.ingestion.ingest(path, "t", "id", "ts", ACTOR)
    assert r["rows"] == 40
    assert list(r["columns"])[3:] == HOSTILE
    assert set(app.features.table_names()) == {"t"}  # nothing dropped, nothing extra
    cols = app.features.column_types("t")
    assert all(cols[h] == "DOUBLE" for h in HOSTILE)
    # a second file appends to the same quoted columns
    assert app.ingestion.ingest(path, "t", "id", "ts", ACTOR)["total_rows"] == 80
    # training reads them back through the same quoting and they become model inputs
    t = app.training.train("t", "y", "m", ACTOR)
    version = app.registry.version("m", t["version"], ACTOR)
    assert version["features"] == HOSTILE
    app.serving.deploy("m", t["version"], ACTOR, force=True)
    record = dict.fromkeys(HOSTILE, 1.0)
    out = app.serving.predict("m", [record], ACTOR)
    assert 0 < out["predictions"][0] < 1
    assert app.serving.decision(out["request_id"], ACTOR)["verified"]


@pytest.mark.parametrize(
    "header,message",
    [
        ("id,ts,_x", "column '_x': names starting with '_' are reserved"),
        ("id,ts,Age,age", "column 'age' appears twice in the header (as 'Age')"),
        ('id,ts,"a\tb"', "column 'a\\tb': the name holds a control or invisible character"),
        ('id,ts," "', "column ' ': a column name is empty"),
        ("id,ts," + "x" * 300, "the name is longer than 255 characters"),
    ],
)
def test_unusable_headers_are_one_line_exit_2(falaj, tmp_path, header, message):
    falaj.ok("init")
    path = tmp_path / "bad.csv"
    width = header.count(",") + 1
    path.write_text(header + "\n" + ",".join(["1", "2025-01-01"] + ["1"] * (width - 2)) + "\n")
    r = falaj("ingest", path, "--table", "t", "--entity", "id", "--timestamp", "ts")
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert json.loads(falaj.ok("status", "--json").stdout)["tables"] == []


@pytest.mark.parametrize("name", ['t"; DROP TABLE x; --', "a b", "_t", "1t", "ta" * 40, ""])
def test_table_and_model_names_are_checked(falaj, tmp_path, name):
    falaj.ok("init")
    path = tmp_path / "ok.csv"
    path.write_text("id,ts,x\n1,2025-01-01,1\n")
    r = falaj("ingest", path, "--table", name, "--entity", "id", "--timestamp", "ts")
    assert r.exit_code == 2 and f"table name {name!r} is not valid" in r.stderr
    r = falaj("train", "--table", "t", "--label", "x", "--name", name)
    assert r.exit_code == 2 and f"model name {name!r} is not valid" in r.stderr
