"""Quoting for SQL text built from names: identifiers and string literals."""

from __future__ import annotations


def ident(name: str) -> str:
    """An identifier quoted for DuckDB or SQLite: any characters, double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
