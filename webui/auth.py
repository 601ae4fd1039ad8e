"""Who is asking: sign-in, enrolment, sessions and API tokens on every route, and the
users and tokens page (``/access``).

A view declares the permission it needs with ``@needs("model.read")`` (below the route
decorator); ``@public`` marks the few routes anyone may call (``/healthz``, sign-in,
enrolment). A ``before_request`` finds the principal (``Authorization: Bearer`` token,
else the session cookie) and checks the view's declaration against the role matrix:
no credential gives 401 with ``WWW-Authenticate: Bearer`` on the API and protocol
routes and a redirect to ``/login?next=...`` on pages; a role without the permission
gives 403; a route that declares nothing is refused (403), and the role-matrix test
fails on it. The services check again (``require``): the web check only answers early.

Cookies: the session cookie holds a random id (stored hashed in control.db),
``HttpOnly; SameSite=Lax``, and ``Secure`` whenever the request came over HTTPS (a
Secure cookie on plain loopback HTTP would never be sent back, so there it is left
off). Cookie-authenticated POST/PUT/DELETE need Flask-WTF's CSRF token (every form
carries ``{{ csrf_field() }}``); bearer-token calls carry no cookie and need none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
)
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup, escape

from appliance import keys
from appliance.auth import USER_ROLES, Actor, Forbidden, Unauthenticated
from appliance.auth.service import ENROLMENT_HOURS, TooManyAttempts
from appliance.errors import FalajError
from webui.apidoc import errors
from webui.apidoc import ok as ok_doc  # "ok" and "page" name parameters below
from webui.apidoc import page as page_doc

bp = Blueprint("auth", __name__)

COOKIE = "falaj_session"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
API_PREFIXES = ("/api/", "/v2", "/invocations", "/metrics", "/ping", "/health")
_UNDECLARED = object()


def needs(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.permission = permission  # type: ignore[attr-defined]
        return view

    return mark


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    view.permission = None  # type: ignore[attr-defined]
    return view


def declared(view: Callable[..., Any]) -> Any:
    """The permission a view declares: a name, None (public), or ``_UNDECLARED``."""
    return getattr(view, "permission", _UNDECLARED)


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
    actor = g.get("actor")
    return actor is not None and actor.can(permission)


@bp.app_template_global()
def signed_in() -> Actor | None:
    return g.get("actor")


# -- wiring ----------------------------------------------------------------------


@bp.record_once
def _setup(state: Any) -> None:
    app: Flask = state.app
    app.config.update(
        SESSION_COOKIE_NAME="falaj_csrf",  # Flask's own cookie holds the CSRF secret only
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in authenticate(): cookie requests only
        WTF_CSRF_TIME_LIMIT=None,  # as long as the session: the cookie is what expires
        # the token and SameSite cookies carry the check; a strict Referer match over
        # HTTPS would refuse every form under a no-referrer policy
        WTF_CSRF_SSL_STRICT=False,
    )
    from flask_wtf.csrf import CSRFProtect

    app.session_interface = _Sessions()

    app.extensions["falaj_csrf"] = CSRFProtect(app)
    app.before_request(authenticate)
    app.after_request(_secure_cookies)


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie (it holds the CSRF secret only), its key derived from the
    master key on first use: `falaj run` builds the app before it makes a new home's key.
    Stable across restarts and processes; `falaj rekey` changes it (forms reload)."""

    def get_signing_serializer(self, app: Flask) -> Any:
        if not app.config.get("SECRET_KEY"):
            master = app.extensions["falaj"].master_key
            app.config["SECRET_KEY"] = keys.derive(master, "web-session").hex()
        return super().get_signing_serializer(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _auth() -> Any:
    return current_app.extensions["falaj"].auth


def is_api() -> bool:
    path = request.path
    return (
        path.startswith(API_PREFIXES)
        or path.endswith("/invocations")
        or request.accept_mimetypes.best == "application/json"
    )


def bearer() -> str | None:
    """The token of this request's ``Authorization: Bearer`` header (see ``bearer_token``)."""
    return bearer_token(request.headers.get("Authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header's value: None without the header, ""
    when it is not ``Bearer <token>`` (the scoring fast path and gRPC read it here too)."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def find_actor() -> tuple[Actor | None, str | None]:
    """The principal of this request and how it proved itself ("bearer", "session")."""
    token = bearer()
    if token is not None:
        return _auth().token_actor(token), "bearer"
    raw = request.cookies.get(COOKIE)
    if raw:
        actor = _auth().session_actor(raw)
        if actor is not None:
            return actor, "session"
    return None, None


def unauthenticated(message: str, invalid: bool = False):
    if is_api():
        from webui.errors import render

        body, status = render(401, message, "Unauthenticated")
        response = make_response(body, status)
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="falaj", error="invalid_token"' if invalid else 'Bearer realm="falaj"'
        )
        return response
    target = request.full_path if request.query_string else request.path
    return redirect("/login?" + urlencode({"next": target}))


def authenticate():
    """Before every request: who is asking, and may they call this view."""
    if request.endpoint is None:  # no such route: the 404 says nothing
        return None
    view = current_app.view_functions.get(request.endpoint)
    permission = "" if request.endpoint == "static" else declared(view)
    actor, via = find_actor()
    g.actor, g.auth_via = actor, via
    if via == "bearer" and actor is None:
        return unauthenticated("the bearer token is not valid: unknown, revoked or expired",
                               invalid=True)  # fmt: skip
    if permission is _UNDECLARED:
        raise Forbidden(f"{request.path}: this route declares no permission; it is refused")
    csrf = via != "bearer" and request.method in UNSAFE  # a cookie may ride along: check
    if not permission:  # public, or static
        if csrf:
            current_app.extensions["falaj_csrf"].protect()
        return None
    if actor is None:
        return unauthenticated("sign in, or send Authorization: Bearer <token>")
    if csrf:
        current_app.extensions["falaj_csrf"].protect()
    if not actor.can(permission):
        raise Forbidden(
            f"{actor} (role {actor.effective_role}) may not use {request.path}: "
            f"it needs {permission}"
        )
    return None


def _secure_cookies(response):
    """Over HTTPS every cookie this app sets is ``Secure``."""
    if request.is_secure:
        cookies = response.headers.getlist("Set-Cookie")
        if any("secure" not in c.lower() for c in cookies):
            response.headers.remove("Set-Cookie")
            for c in cookies:
                response.headers.add("Set-Cookie", c if "; secure" in c.lower() else c + "; Secure")
    return response


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (another site, a scheme,
    ``//host``, backslashes, control characters) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target[:2000]


def _address() -> str:
    return request.remote_addr or "unknown"


def _signed_in(target: str, session: str):
    response = redirect(safe_next(target))
    response.set_cookie(COOKIE, session, httponly=True, samesite="Lax", secure=request.is_secure,
                        path="/")  # fmt: skip
    return response


# -- sign-in, enrolment, sign-out ------------------------------------------------


@bp.get("/login")
@public
def login_page():
    if g.get("actor") is not None and g.get("auth_via") == "session":
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", next=safe_next(request.args.get("next")), error=None)


@bp.post("/login")
@public
def login():
    form = request.form
    target = safe_next(form.get("next"))
    try:
        _actor, session = _auth().login(form.get("name", ""), form.get("password", ""),
                                        _address())  # fmt: skip
    except TooManyAttempts as exc:
        response = make_response(render_template("login.html", next=target, error=exc.message), 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except Unauthenticated as exc:
        return render_template("login.html", next=target, error=exc.message), 401
    return _signed_in(target, session)


@bp.get("/enrol")
@public
def enrol_page():
    token = request.args.get("token", "")[:200]
    user = _auth().enrolment(token)  # 404 for a used, expired or unknown link
    return render_template("enrol.html", token=token, user=user, error=None)


@bp.post("/enrol")
@public
def enrol():
    form = request.form
    token = form.get("token", "")[:200]
    user = _auth().enrolment(token)
    password = form.get("password", "")
    try:
        if password != form.get("confirm", ""):
            raise FalajError("the two passwords differ")
        _actor, session = _auth().enrol(token, password, _address())
    except FalajError as exc:
        if exc.status == 404:
            raise
        return render_template("enrol.html", token=token, user=user, error=exc.message), 400
    return _signed_in("/", session)


@bp.post("/logout")
@public
def logout():
    actor = g.get("actor")
    if actor is not None and g.get("auth_via") == "session":
        _auth().logout(request.cookies.get(COOKIE, ""), actor)
    response = redirect("/login")
    response.delete_cookie(COOKIE, path="/")
    return response


# -- users and tokens ------------------------------------------------------------


def _access(shown: dict | None = None, status: int = 200):
    from webui.api import request_actor

    actor = request_actor()
    auth = _auth()
    users = auth.users(actor) if actor.can("user.manage") else []
    return render_template(
        "access.html", users=users, tokens=auth.tokens(actor), roles=USER_ROLES, shown=shown,
        me=actor, hours=ENROLMENT_HOURS,
        done=request.args.get("done"), ok=request.args.get("ok", "1") == "1",
    ), status  # fmt: skip


@bp.get("/access")
@needs("token.manage")
def access():
    return _access()


def _form_answer(fn: Callable[[], Any], message: Callable[[Any], str]):
    from webui.api import back

    try:
        result = fn()
    except FalajError as exc:
        if exc.status >= 500:
            raise
        return back("auth.access", exc.message, ok=False)
    return back("auth.access", message(result))


@bp.post("/access/users")
@needs("user.manage")
def add_user():
    from webui.api import request_actor

    form = request.form
    try:
        r = _auth().add_user(form.get("name", "").strip(), form.get("role", ""), request_actor())
    except FalajError as exc:
        if exc.status >= 500:
            raise
        from webui.api import back

        return back("auth.access", exc.message, ok=False)
    r["link"] = _auth().enrol_link(r["enrolment"], request.host_url.rstrip("/"))
    return _access({"kind": "enrolment", "name": r["name"], "secret": r["link"]})


@bp.post("/access/users/<name>/enrol")
@needs("user.manage")
def reenrol_user(name: str):
    from webui.api import request_actor

    r = _auth().reenrol(name, request_actor())
    link = _auth().enrol_link(r["enrolment"], request.host_url.rstrip("/"))
    return _access({"kind": "enrolment", "name": name, "secret": link})


@bp.post("/access/users/<name>/role")
@needs("user.manage")
def set_role(name: str):
    from webui.api import request_actor

    role = request.form.get("role", "")
    return _form_answer(lambda: _auth().set_role(name, role, request_actor()),
                        lambda r: f"{name}: role {r['role']} (was {r['was']})")  # fmt: skip


@bp.post("/access/users/<name>/disable")
@needs("user.manage")
def disable_user(name: str):
    from webui.api import request_actor

    return _form_answer(lambda: _auth().set_disabled(name, True, request_actor()),
                        lambda r: f"{name}: disabled")  # fmt: skip


@bp.post("/access/users/<name>/enable")
@needs("user.manage")
def enable_user(name: str):
    from webui.api import request_actor

    return _form_answer(lambda: _auth().set_disabled(name, False, request_actor()),
                        lambda r: f"{name}: enabled")  # fmt: skip


@bp.post("/access/tokens")
@needs("token.manage")
def create_token():
    from webui.api import back, request_actor

    form = request.form
    models = [m.strip() for m in form.get("models", "").split(",") if m.strip()] or None
    try:
        r = _auth().create_token(form.get("name", "").strip(), form.get("role", ""),
                                 request_actor(), models, form.get("expires") or None)  # fmt: skip
    except FalajError as exc:
        if exc.status >= 500:
            raise
        return back("auth.access", exc.message, ok=False)
    return _access({"kind": "token", "name": r["name"], "secret": r["token"], "id": r["id"]})


@bp.post("/access/tokens/<token_id>/revoke")
@needs("token.manage")
def revoke_token(token_id: str):
    from webui.api import request_actor

    return _form_answer(lambda: _auth().revoke_token(token_id, request_actor()),
                        lambda r: f"{r['id']}: revoked")  # fmt: skip


# -- the same over the JSON API --------------------------------------------------


@bp.get("/api/v1/users")
@needs("user.manage")
def api_users():
    from webui.api import request_actor

    return {"users": _auth().users(request_actor())}


@bp.post("/api/v1/users")
@needs("user.manage")
def api_add_user():
    """Add a user: body {"name", "role"}; the answer holds their one-time enrolment link."""
    from webui.api import json_body, request_actor

    body = json_body()
    r = _auth().add_user(str(body.get("name", "")), str(body.get("role", "")), request_actor())
    r["link"] = _auth().enrol_link(r["enrolment"], request.host_url.rstrip("/"))
    return r, 201


@bp.put("/api/v1/users/<name>/role")
@needs("user.manage")
def api_set_role(name: str):
    from webui.api import json_body, request_actor

    return _auth().set_role(name, str(json_body().get("role", "")), request_actor())


@bp.get("/api/v1/tokens")
@needs("token.manage")
def api_tokens():
    from webui.api import request_actor

    return {"tokens": _auth().tokens(request_actor())}


@bp.post("/api/v1/tokens")
@needs("token.manage")
def api_create_token():
    """Create a token: body {"name", "role", "models"?: [...], "expires"?: "30d"}; the
    answer holds the token, shown this once."""
    from webui.api import json_body, request_actor

    body = json_body()
    models = body.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) for m in models)
    ):
        from appliance.errors import BadInput

        raise BadInput('request body: field "models" must be a list of model names')
    expires = body.get("expires")
    return _auth().create_token(str(body.get("name", "")), str(body.get("role", "")),
                                request_actor(), models or None,
                                str(expires) if expires else None), 201  # fmt: skip


@bp.delete("/api/v1/tokens/<token_id>")
@needs("token.manage")
def api_revoke_token(token_id: str):
    from webui.api import request_actor

    return _auth().revoke_token(token_id, request_actor())


# -- the OpenAPI entries of these routes (webui/openapi.py merges them) -----------------

_FORM = "application/x-www-form-urlencoded"
ERRORS = (
    "Bad input, not signed in (401), not allowed (403), unknown user or token, too "
    "many sign-in failures (429)"
)


def _form(properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "required": required,
              "properties": {k: {"type": "string", "maxLength": 200} | v
                             for k, v in properties.items()}}  # fmt: skip
    return {"required": True, "content": {_FORM: {"schema": schema}}}


def _form_op(summary: str, properties: dict, required: list[str], params=(), page=True) -> dict:
    responses = {
        "302": {"description": "Back to the page, with the outcome"},
        **errors(ERRORS, html=True),
    }
    if page:
        responses["200"] = page_doc("The access page, showing a secret this once")
    op = {"summary": summary, "tags": ["Access"], "responses": responses}
    if properties:
        op["requestBody"] = _form(properties, required)
    if params:
        op["parameters"] = list(params)
    return {"post": op}


_USER = {"name": "name", "in": "path", "required": True, "description": "A user name",
         "schema": {"type": "string", "example": "amina"}}  # fmt: skip
_TOKEN = {"name": "token_id", "in": "path", "required": True,
          "description": "A token's id (its listed prefix)",
          "schema": {"type": "string", "example": "flj_1a2b3c4d"}}  # fmt: skip
_ROLE = {"type": "string", "enum": list(USER_ROLES)}
_NEW_TOKEN = {"type": "object", "required": ["name", "role"], "properties": {
    "name": {"type": "string", "example": "scoring"}, "role": _ROLE,
    "models": {"type": "array", "items": {"type": "string"}, "example": ["credit"]},
    "expires": {"type": "string", "example": "30d"}}}  # fmt: skip


def _api(method: str, summary: str, ok: str, body: dict | None = None, params=(),
         status: str = "200") -> dict:  # fmt: skip
    op = {"summary": summary, "tags": ["Access"],
          "responses": {status: ok_doc(ok), **errors(ERRORS)}}  # fmt: skip
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = list(params)
    return {method: op}


OPENAPI: dict[str, Any] = {
    "/login": {
        "get": {"summary": "The sign-in page", "tags": ["Access"],
                "parameters": [{"name": "next", "in": "query", "required": False,
                                "description": "A local path to go to once signed in",
                                "schema": {"type": "string"}}],
                "responses": {"200": page_doc("The page"),
                              "302": {"description": "Signed in already: to next"}}},
        "post": {"summary": "Sign in: sets the session cookie (rate-limited, audited)",
                 "tags": ["Access"],
                 "requestBody": _form({"name": {}, "password": {"maxLength": 1024},
                                       "next": {"maxLength": 2000}}, ["name", "password"]),
                 "responses": {"302": {"description": "Signed in: to next"},
                               **errors(ERRORS, html=True)}},
    },
    "/enrol": {
        "get": {"summary": "Set a password with a one-time enrolment link", "tags": ["Access"],
                "parameters": [{"name": "token", "in": "query", "required": True,
                                "description": "The link's one-time token",
                                "schema": {"type": "string"}}],
                "responses": {"200": page_doc("The page"), **errors(ERRORS, html=True)}},
        "post": {"summary": "Set the password (one use of the link) and sign in",
                 "tags": ["Access"],
                 "requestBody": _form({"token": {}, "password": {"maxLength": 1024},
                                       "confirm": {"maxLength": 1024}},
                                      ["token", "password", "confirm"]),
                 "responses": {"302": {"description": "Signed in: to the dashboard"},
                               **errors(ERRORS, html=True)}},
    },
    "/logout": {"post": {"summary": "Sign out: the session ends", "tags": ["Access"],
                         "responses": {"302": {"description": "To the sign-in page"},
                                       **errors(ERRORS, html=True)}}},
    "/access": {"get": {"summary": "Users and API tokens (HTML)", "tags": ["Access"],
                        "responses": {"200": page_doc("The page"), **errors(ERRORS, html=True)}}},
    "/access/users": _form_op("Add a user; shows their one-time enrolment link",
                              {"name": {}, "role": _ROLE}, ["name", "role"]),
    "/access/users/{name}/enrol": _form_op("A new enrolment link for a user", {}, [], [_USER]),
    "/access/users/{name}/role": _form_op("Change a user's role (not your own)",
                                          {"role": _ROLE}, ["role"], [_USER], page=False),
    "/access/users/{name}/disable": _form_op("Disable a user", {}, [], [_USER], page=False),
    "/access/users/{name}/enable": _form_op("Enable a user", {}, [], [_USER], page=False),
    "/access/tokens": _form_op("Create an API token; shows it this once",
                               {"name": {}, "role": _ROLE, "models": {}, "expires": {}},
                               ["name", "role"]),
    "/access/tokens/{token_id}/revoke": _form_op("Revoke an API token", {}, [], [_TOKEN],
                                                 page=False),
    "/api/v1/users": {
        **_api("get", "Users, their roles and whether they enrolled", "The users"),
        **_api("post", "Add a user; the answer holds their one-time enrolment link",
               "The user and link",
               {"type": "object", "required": ["name", "role"],
                "properties": {"name": {"type": "string", "example": "amina"}, "role": _ROLE}},
               status="201"),
    },
    "/api/v1/users/{name}/role": _api(
        "put", "Change a user's role (not your own; audited)", "The change",
        {"type": "object", "required": ["role"], "properties": {"role": _ROLE}}, [_USER]),
    "/api/v1/tokens": {
        **_api("get", "API tokens by id (never their secret)", "The tokens"),
        **_api("post", "Create an API token; the answer holds it, this once", "The token",
               _NEW_TOKEN, status="201"),
    },
    "/api/v1/tokens/{token_id}": _api("delete", "Revoke an API token (audited)", "Revoked",
                                      params=[_TOKEN]),
}  # fmt: skip
