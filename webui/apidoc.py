"""Pieces of OpenAPI entries that several blueprints' parts share (``webui.openapi``
merges the parts and imports them, so they cannot import it)."""

from __future__ import annotations

JSON = "application/json"
ERROR = {"$ref": "#/components/schemas/Error"}


def ok(description: str, schema: dict | None = None) -> dict:
    """A JSON answer: an object unless ``schema`` says otherwise."""
    return {"description": description,
            "content": {JSON: {"schema": schema or {"type": "object"}}}}  # fmt: skip


def page(description: str) -> dict:
    """An HTML page."""
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def errors(cases: str, html: bool = False) -> dict:
    """An operation's error answers: 4xx for ``cases``, 503 when a store cannot be read;
    an error page for a page's route (``html``), else the Error object."""
    found = page("") if html else ok("", ERROR)
    return {"4XX": found | {"description": cases},
            "503": found | {"description": "A store cannot be read"}}  # fmt: skip
