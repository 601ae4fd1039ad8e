"""Who is asking: login, enrolment, sessions and API tokens on every route, and the
users and tokens pages (the trust issue fills this in).

A view declares the permission it needs with ``@needs("model.read")`` (below the route
decorator); the role-matrix test reads that declaration from every route, so a route
without one fails the test. ``@public`` marks the few routes anyone may call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app
from markupsafe import Markup, escape

bp = Blueprint("auth", __name__)


def needs(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.permission = permission  # type: ignore[attr-defined]
        return view

    return mark


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    view.permission = None  # type: ignore[attr-defined]
    return view


@bp.app_template_global()
def csrf_field() -> Markup:
    """The hidden CSRF input every ``<form method="post">`` carries: ``{{ csrf_field() }}``."""
    if not current_app.config.get("SECRET_KEY"):
        return Markup("")
    from flask_wtf.csrf import generate_csrf

    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(
        escape(generate_csrf())
    )


@bp.app_template_global()
def can(permission: str) -> bool:
    """Whether the signed-in principal holds ``permission`` (the nav shows only those)."""
    return True
