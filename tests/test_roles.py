"""The role matrix on every route: each route and method, for every role, gives exactly
what the matrix says (GETs a 200 when allowed, with real names in the path; anything
allowed never a 401/403; anything denied exactly a 403), and without a credential a 401
(API) or a redirect to the sign-in page (pages) everywhere but /healthz. The service
layer's ``require`` agrees with the matrix for every role and permission.

GETs run the real views. A POST/PUT/DELETE the web check lets through is answered 204
by a hook behind it (``X-Role-Matrix``), so this test changes nothing and stays fast
(a self-test or a restore takes seconds); the services' own ``require`` is checked for
every (role, permission) pair below, and each area's tests run its changes."""

import re

import pyarrow.csv as pacsv
import pytest
from flask import request

from appliance import demo
from appliance.auth import PERMISSIONS, ROLES, USER_ROLES, Actor, Forbidden, require
from appliance.core import Appliance
from tests.conftest import ACTOR, FEATURES, RECORD
from webui import create_app
from webui.auth import _UNDECLARED, COOKIE, declared

PUBLIC = {"/healthz", "/login", "/enrol", "/logout", "/static/<path:filename>"}
API = re.compile(r"^/(api/|v2|invocations|metrics|ping|health)|/invocations$")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
# routes whose objects this module does not make (another area's): allowed is any 2xx-4xx
# but 401/403 (the others' own tests check their 200s)
UNKNOWN = re.compile(r"backups|reviews|subjects|checkpoints|receipts|proofs|selftest")
QUERY = {"api.resolve_model": "?ref=credit@1"}

WORKSPACE = """
tables:
  loans: {entity: customer_id, event_time: event_time}
pipelines:
  check:
    steps:
      - validate: {table: loans, min_rows: 1}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One appliance for the whole module: credit@1 deployed, one decision, one training
    run, one queued pipeline run, and an API token per role."""
    base = tmp_path_factory.mktemp("roles")
    pacsv.write_csv(demo.credit_risk(2000, seed=3), base / "credit.csv")
    app = Appliance.open({"home": str(base / "home")})
    app.init(ACTOR)
    (app.home / "falaj.yaml").write_text(WORKSPACE)
    app.ingestion.ingest(base / "credit.csv", "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.serving.deploy("credit", 1, ACTOR)
    answer = app.serving.predict("credit", [RECORD], ACTOR)
    pipeline_run = app.scheduler.pipelines.start("check", ACTOR)["id"]
    tokens = {r: app.auth.create_token(r, r, ACTOR)["token"] for r in USER_ROLES}
    spare = app.auth.create_token("spare", "viewer", ACTOR)["id"]  # the one the revokes hit
    params = {
        "name": "credit", "version": "1", "alias": "champion", "filename": "style.css", "fmt": "json",
        "request_id": answer["request_id"], "alert_id": "1", "token_id": spare,
        "run_id": app.runs.list(ACTOR)[0]["id"],
    }  # fmt: skip
    by_endpoint = {"pipelines.run_page": {"run_id": pipeline_run},
                   "pipelines.api_run": {"run_id": pipeline_run},
                   "pipelines.approve_form": {"run_id": pipeline_run},
                   "pipelines.cancel_form": {"run_id": pipeline_run},
                   "pipelines.api_approve": {"run_id": pipeline_run},
                   "pipelines.api_cancel": {"run_id": pipeline_run},
                   "pipelines.run_form": {"name": "check"},
                   "pipelines.api_start": {"name": "check"}}  # fmt: skip
    app.registry.set_alias("credit", "champion", 1, ACTOR)
    flask_app = create_app(app, {"TESTING": True})

    @flask_app.before_request  # after webui.auth's check: only what it let through gets here
    def stop_changes():
        if request.method != "GET" and request.headers.get("X-Role-Matrix"):
            return "", 204  # allowed; the change itself is left to each area's own tests

    yield app, flask_app, tokens, params, by_endpoint
    app.close()


def routes(flask_app):
    for rule in sorted(flask_app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def path_of(rule, params, by_endpoint) -> tuple[str, bool]:
    """The rule's path with real values; and whether every parameter had one."""
    values = params | by_endpoint.get(rule.endpoint, {})
    known = all(values.get(a) is not None for a in rule.arguments) and not UNKNOWN.search(rule.rule)
    filled = {a: values.get(a) or (1 if "int" in str(rule._converters[a]).lower() else "x")
              for a in rule.arguments}  # fmt: skip
    path = rule.build(filled, append_unknown=False)[1]
    return path + QUERY.get(rule.endpoint, ""), known


def test_every_route_declares_a_known_permission(world):
    _, flask_app, *_ = world
    undeclared, unknown = [], []
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        p = declared(flask_app.view_functions[rule.endpoint])
        if p is _UNDECLARED:
            undeclared.append(rule.rule)
        elif p is not None and p not in PERMISSIONS:
            unknown.append((rule.rule, p))
        elif p is None and rule.rule not in PUBLIC:
            unknown.append((rule.rule, "public"))
    assert undeclared == [], "routes without @needs(...) or @public"
    assert unknown == [], "routes declaring an unknown permission, or public beyond the list"


@pytest.mark.parametrize("role", USER_ROLES)
def test_every_route_and_method_gives_what_the_matrix_says(world, role):
    _, flask_app, tokens, params, by_endpoint = world
    client = flask_app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens[role]}"
    client.environ_base["HTTP_X_ROLE_MATRIX"] = "1"
    wrong = []
    for rule, method in routes(flask_app):
        if rule.rule in PUBLIC or (rule.rule, method) == ("/logout", "POST"):
            continue
        needed = declared(flask_app.view_functions[rule.endpoint])
        path, known = path_of(rule, params, by_endpoint)
        r = client.open(path, method=method)
        allowed = needed in ROLES[role]
        if not allowed:
            ok = r.status_code == 403
        elif method == "GET" and known:
            ok = r.status_code == 200
        else:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        if not ok:
            wrong.append(f"{method} {path} ({needed}): {r.status_code} {r.data[:200]!r}")
    assert wrong == [], f"{role}:\n" + "\n".join(wrong)


def test_without_a_credential_every_route_answers_401_or_the_sign_in_page(world):
    _, flask_app, _, params, by_endpoint = world
    client = flask_app.test_client()
    wrong = []
    for rule, method in routes(flask_app):
        path, _ = path_of(rule, params, by_endpoint)
        r = client.open(path, method=method)
        if rule.rule in PUBLIC:
            if r.status_code in (401, 403):
                wrong.append(f"{method} {path}: public, but {r.status_code}")
        elif API.search(rule.rule):
            if r.status_code != 401 or not r.headers.get("WWW-Authenticate", "").startswith(
                "Bearer"
            ):
                wrong.append(f"{method} {path}: {r.status_code}, not a 401 with WWW-Authenticate")
        elif r.status_code != 302 or not r.location.startswith("/login?next="):
            wrong.append(f"{method} {path}: {r.status_code}, not a redirect to /login")
    assert wrong == []
    assert client.get("/healthz").status_code == 200


def test_a_bad_token_or_cookie_is_no_credential(world):
    _, flask_app, *_ = world
    client = flask_app.test_client()
    r = client.get("/api/v1/models", headers={"Authorization": "Bearer flj_nope_nope"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = client.get("/api/v1/models", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert r.status_code == 401
    client.set_cookie(COOKIE, "forged-session-id")
    assert client.get("/models").status_code == 302


@pytest.mark.parametrize("role", sorted(ROLES))
def test_require_follows_the_matrix_for_every_permission(role):
    actor = Actor("token", "t", role)
    for permission in PERMISSIONS:
        if permission in ROLES[role]:
            require(actor, permission)
        else:
            with pytest.raises(Forbidden):
                require(actor, permission)


def test_internal_principals_and_model_scope():
    for kind in ("cli", "system", "test", "bench"):
        assert Actor(kind, "x").effective_role == "admin"
    scheduler = Actor("scheduler", "falaj")
    require(scheduler, "pipeline.run")
    for permission in ("user.manage", "token.manage", "keys.rotate", "backup.restore"):
        with pytest.raises(Forbidden):
            require(scheduler, permission)
    with pytest.raises(Forbidden):
        require(Actor("api", "127.0.0.1"), "model.read")  # no role: nothing
    scoped = Actor("token", "t", "ml-engineer", ("credit",))
    require(scoped, "model.predict", model="credit")
    with pytest.raises(Forbidden, match="scoped to credit"):
        require(scoped, "model.predict", model="other")
    assert set(USER_ROLES) == set(ROLES) - {"scheduler"} and len(USER_ROLES) == 7
    assert ROLES["admin"] == set(PERMISSIONS)
    assert all(p.endswith(".read") for p in ROLES["viewer"])
