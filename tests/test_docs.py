"""Docs checked by tests: every CLI command has help with an example."""

import click
import pytest

from appliance.cli import cli


def commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        yield f"{prefix}{name}", cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix}{name} ")


ALL = sorted(commands(cli), key=lambda c: c[0])


def test_the_cli_has_the_designed_commands():
    names = {n for n, _ in ALL}
    assert {"init", "run", "status", "ingest", "train", "deploy", "predict", "models list", "models show",
            "models verify", "audit verify", "audit tail", "settings", "bench", "rollback",
            "demo-data"} <= names  # fmt: skip


@pytest.mark.parametrize("name,cmd", ALL, ids=[n for n, _ in ALL])
def test_every_command_has_help_with_an_example(name, cmd):
    assert cmd.help, f"falaj {name} has no help"
    assert "Example:" in cmd.help, f"falaj {name}: help has no example"
    example = cmd.help.split("Example:")[1]
    assert f"falaj {name.split()[0]}" in example or "falaj --home" in example
