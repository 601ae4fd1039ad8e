"""Naming a model version, MLflow's way: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
and the short forms ``NAME@VERSION``, ``NAME@ALIAS`` and ``NAME`` (the latest version)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.errors import BadInput
from appliance.names import check_name

ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None  # at most one of version and alias is set

    def __str__(self) -> str:
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        if self.version is not None:
            return f"models:/{self.name}/{self.version}"
        return f"models:/{self.name}"


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias) or alias.isdigit():
        raise BadInput(f"alias {alias!r} is not valid: use a letter, then letters, digits, "
                       "'_' or '-' (at most 63)")  # fmt: skip
    if alias.lower() == "latest":
        raise BadInput("alias 'latest' is reserved: it always means the newest version")
    return alias


def parse(ref: str) -> ModelRef:
    """A reference in any of the accepted forms; BadInput naming the form otherwise."""
    if not isinstance(ref, str) or not ref:
        raise BadInput("a model reference is empty (use NAME, NAME@VERSION, NAME@ALIAS, "
                       "models:/NAME/VERSION or models:/NAME@ALIAS)")  # fmt: skip
    body = ref.removeprefix("models:/")
    if body != ref and "/" in body:
        name, _, tail = body.partition("/")
        if not tail.isdigit():
            raise BadInput(f"{ref!r}: the version after '/' must be a number")
        return ModelRef(check_name("model", name), version=int(tail))
    name, at, tail = body.partition("@")
    check_name("model", name)
    if not at:
        return ModelRef(name)
    if tail.isdigit():
        return ModelRef(name, version=int(tail))
    if tail.lower() == "latest":
        return ModelRef(name)
    return ModelRef(name, alias=check_alias(tail))
