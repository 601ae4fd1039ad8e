"""Users, enrolment, passwords, API tokens, sessions, CSRF and the sign-in rate limit,
through the services, the CLI (`falaj users`, `falaj tokens`, `--as`) and HTTP."""

import json
import re
import time
import urllib.request
from datetime import timedelta

import pyarrow.csv as pacsv
import pytest
from playwright.sync_api import expect

from appliance import demo
from appliance.auth import service as auth_service
from appliance.core import Appliance
from appliance.errors import BadInput, NotFound
from tests.conftest import ACTOR, FEATURES, RECORD, admin_token
from tests.test_browser import browser  # noqa: F401 -- the module's Chromium
from webui import create_app
from webui.auth import COOKIE, safe_next

PASSWORD = "river channels of al ain"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One appliance for the module: credit@1 deployed, a signed-up admin ``root``."""
    base = tmp_path_factory.mktemp("auth")
    pacsv.write_csv(demo.credit_risk(1500, seed=3), base / "credit.csv")
    app = Appliance.open({"home": str(base / "home")})
    app.init(ACTOR)
    app.ingestion.ingest(base / "credit.csv", "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.serving.deploy("credit", 1, ACTOR)
    enrol(app, "root", "admin")
    yield app
    app.close()


@pytest.fixture
def web(world):
    return create_app(world, {"TESTING": True})


def enrol(app, name: str, role: str, password: str = PASSWORD) -> None:
    raw = app.auth.add_user(name, role, ACTOR)["enrolment"]
    app.auth.enrol(raw, password)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def sign_in(web, name: str, password: str = PASSWORD, address: str = "127.0.0.1", https=False):
    """A test client signed in through the form; (client, its CSRF token, the answer)."""
    client = web.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    base = "https://localhost" if https else "http://localhost"
    token = csrf_of(client.get("/login", base_url=base).get_data(as_text=True))
    r = client.post("/login", data={"name": name, "password": password, "csrf_token": token,
                                    "next": "/models"}, base_url=base)  # fmt: skip
    return client, token, r


# -- passwords and enrolment -----------------------------------------------------------


def test_passwords_are_argon2id_at_rest_and_weak_ones_are_refused(world):
    row = world.control.user("root")
    assert row["password_hash"].startswith("$argon2id$v=19$")
    assert PASSWORD not in row["password_hash"]
    raw = world.auth.add_user("weak", "viewer", ACTOR)["enrolment"]
    for bad in ("admin", "weak", "password1234", "adminadmin12", "weakweakweakweak",
                "aaaaaaaaaaaaaaaa", "x" * 2000):  # fmt: skip
        with pytest.raises(BadInput, match="password"):
            world.auth.enrol(raw, bad)
    world.auth.enrol(raw, "a sound passphrase here")  # the link still worked after refusals


def test_enrolment_links_are_single_use_and_expire(world, monkeypatch):
    raw = world.auth.add_user("once", "viewer", ACTOR)["enrolment"]
    assert world.auth.enrolment(raw)["name"] == "once"
    world.auth.enrol(raw, PASSWORD)
    with pytest.raises(NotFound, match="not valid"):
        world.auth.enrol(raw, PASSWORD + " again")
    late = world.auth.add_user("late", "viewer", ACTOR)["enrolment"]
    real_now = auth_service.now
    monkeypatch.setattr(auth_service, "now", lambda: real_now() + timedelta(hours=25))
    with pytest.raises(NotFound, match="expired"):
        world.auth.enrol(late, PASSWORD)
    monkeypatch.undo()
    fresh = world.auth.reenrol("late", ACTOR)["enrolment"]  # a new link; the old one is dead
    world.auth.enrol(fresh, PASSWORD)


def test_admin_admin_and_unknown_users_cannot_sign_in(web):
    for name, password in [("admin", "admin"), ("root", "admin"), ("root", "root"),
                           ("nobody", PASSWORD), ("root", "")]:  # fmt: skip
        _, _, r = sign_in(web, name, password, address=f"10.1.0.{len(password)}")
        assert r.status_code == 401 and COOKIE not in r.headers.get("Set-Cookie", "")


def test_first_start_prints_one_enrolment_link_until_an_admin_enrols(tmp_path):
    app = Appliance.open({"home": str(tmp_path / "home")})
    app.init(ACTOR)
    said = []
    link = app.auth.first_start(said.append, "http://127.0.0.1:8080", terminal=True)
    assert link.startswith("http://127.0.0.1:8080/enrol?token=") and link in said[0]
    # not on a terminal (systemd, docker): the link goes to a private file, not the log
    again = app.auth.first_start(said.append, "http://127.0.0.1:8080", terminal=False)
    path = app.home / "first-admin-enrolment.txt"
    assert again in path.read_text() and again not in said[1] and str(path) in said[1]
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(NotFound):
        app.auth.enrolment(link.split("token=")[1])  # the first one no longer works
    app.auth.enrol(again.split("token=")[1], PASSWORD)
    assert not path.exists()  # used: removed
    assert app.auth.first_start(said.append, "http://x") is None and len(said) == 2
    assert [u["name"] for u in app.auth.users(ACTOR)] == ["admin"]
    app.close()


# -- the CLI ---------------------------------------------------------------------------


def test_users_and_tokens_on_the_cli_and_acting_as_a_user(falaj, home):
    falaj.ok("init")
    out = falaj.ok("users", "add", "amina", "--role", "data-scientist").output
    raw = re.search(r"/enrol\?token=(\S+)", out)[1]
    app = Appliance.open({"home": str(home)})
    app.auth.enrol(raw, PASSWORD)
    app.close()
    falaj.ok("users", "add", "boss", "--role", "admin")
    listed = falaj.ok("users", "list").output
    assert "amina" in listed and "data-scientist" in listed and "not enrolled" in listed
    # acting as a user: their role, not the local administrator's
    r = falaj("--as", "amina", "users", "role", "amina", "admin")
    assert r.exit_code == 2 and "may not" in r.stderr and "user.manage" in r.stderr
    r = falaj("--as", "boss", "users", "role", "boss", "viewer")
    assert r.exit_code == 2 and "your own role" in r.stderr
    assert falaj("--as", "ghost", "models", "list").exit_code == 2
    assert falaj.ok("--as", "amina", "models", "list")
    falaj.ok("--as", "boss", "users", "role", "amina", "ml-engineer")
    # traversal and odd names are refused before anything is stored
    for name in ("../x", "..%2fx", "a/b", "%2e%2e", "", "-x"):
        assert falaj("users", "add", name, "--role", "viewer").exit_code == 2
        assert falaj("tokens", "create", name, "--role", "viewer").exit_code == 2
    assert falaj("tokens", "create", "t", "--role", "viewer", "--model", "../x").exit_code == 2
    # tokens: shown once, listed by id, revoked
    out = falaj.ok("tokens", "create", "ci", "--role", "viewer", "--expires", "30d").output
    token, token_id = out.split()[0], out.split()[1]
    assert token.startswith(token_id + "_")
    listed = falaj.ok("tokens", "list").output
    assert token_id in listed and token not in listed and "active" in listed
    assert "revoked" in falaj.ok("tokens", "revoke", token_id).output
    assert "revoked" in falaj.ok("tokens", "list").output
    r = falaj("--as", "amina", "tokens", "create", "mine", "--role", "admin")
    assert r.exit_code == 2 and "token.manage" in r.stderr
    falaj.ok("users", "disable", "amina")
    assert falaj("--as", "amina", "models", "list").exit_code == 2


# -- tokens over HTTP ------------------------------------------------------------------


def test_tokens_revoked_expired_and_scoped_to_models(world, web):
    client = web.test_client()
    url = "/api/v1/models/credit/predict"
    scoped = world.auth.create_token("scoped", "ml-engineer", ACTOR, ["credit"])
    other = world.auth.create_token("other", "ml-engineer", ACTOR, ["fraud"])
    bearer = lambda t: {"Authorization": f"Bearer {t['token']}"}  # noqa: E731
    r = client.post(url, json={"records": [RECORD]}, headers=bearer(scoped))
    assert r.status_code == 200 and r.get_json()["version"] == 1
    r = client.post(url, json={"records": [RECORD]}, headers=bearer(other))
    assert r.status_code == 403 and "scoped to fraud" in r.get_json()["error"]["message"]
    assert client.get("/v2/models/credit", headers=bearer(scoped)).status_code == 200
    # a role's limits hold for a token as for a user
    viewer = world.auth.create_token("looker", "viewer", ACTOR)
    assert client.post(url, json={"records": [RECORD]}, headers=bearer(viewer)).status_code == 403
    assert client.get("/api/v1/models", headers=bearer(viewer)).status_code == 200
    # revoked: refused at once in this process (another one within TOKEN_CACHE_S)
    world.auth.revoke_token(scoped["id"], ACTOR)
    r = client.post(url, json={"records": [RECORD]}, headers=bearer(scoped))
    assert r.status_code == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    # expired
    brief = world.auth.create_token("brief", "viewer", ACTOR, expires="1s")
    assert client.get("/api/v1/models", headers=bearer(brief)).status_code == 200
    time.sleep(1.2)
    assert client.get("/api/v1/models", headers=bearer(brief)).status_code == 401
    # shown once: the list has ids, never secrets
    listed = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {admin_token(world)}"})
    assert listed.status_code == 200 and scoped["token"] not in listed.get_data(as_text=True)
    assert {"id", "name", "role", "models", "active"} <= set(listed.get_json()["tokens"][0])


def test_a_revoke_elsewhere_takes_effect_within_the_cache_time(world):
    other = Appliance.open({"home": str(world.home)})  # as another process would
    try:
        t = world.auth.create_token("roaming", "viewer", ACTOR)
        assert other.auth.token_actor(t["token"]).role == "viewer"  # cached there now
        world.auth.revoke_token(t["id"], ACTOR)
        time.sleep(auth_service.TOKEN_CACHE_S + 0.2)
        assert other.auth.token_actor(t["token"]) is None
    finally:
        other.close()


def test_a_token_cannot_outrank_its_maker(world, web):
    platform = world.auth.create_token("ops", "platform-engineer", ACTOR)
    client = web.test_client()
    headers = {"Authorization": f"Bearer {platform['token']}"}
    r = client.post("/api/v1/tokens", json={"name": "up", "role": "admin"}, headers=headers)
    assert r.status_code == 403 and "more than its maker" in r.get_json()["error"]["message"]
    r = client.post("/api/v1/tokens", json={"name": "down", "role": "viewer"}, headers=headers)
    assert r.status_code == 201 and r.get_json()["token"].startswith(r.get_json()["id"])
    r = client.post("/api/v1/users", json={"name": "sneak", "role": "admin"}, headers=headers)
    assert r.status_code == 403


# -- sessions, cookies, CSRF, the rate limit -------------------------------------------


def test_sign_in_sets_a_strict_session_cookie_and_signs_out(web):
    client, token, r = sign_in(web, "root")
    assert r.status_code == 302 and r.location == "/models"
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain loopback HTTP: a Secure cookie would never return
    assert client.get("/models").status_code == 200
    assert "root" in client.get("/models").get_data(as_text=True)  # the signed-in name
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/models").status_code == 302  # the session ended server-side
    # over HTTPS every cookie is Secure
    _, _, r = sign_in(web, "root", https=True)
    cookies = r.headers.getlist("Set-Cookie")
    assert r.status_code == 302 and any(c.startswith(COOKIE + "=") for c in cookies)
    assert all("; Secure" in c for c in cookies)


def test_an_idle_session_ends(web, monkeypatch):
    client, _, _ = sign_in(web, "root")
    assert client.get("/models").status_code == 200
    real_now = auth_service.now
    monkeypatch.setattr(auth_service, "now", lambda: real_now() + timedelta(minutes=31))
    r = client.get("/models")
    assert r.status_code == 302 and r.location.startswith("/login?next=")


def test_cookie_posts_need_the_csrf_token(world, web):
    enrol(world, "formy", "viewer")
    client, token, _ = sign_in(web, "root")
    r = client.post("/access/users/formy/role", data={"role": "data-engineer"})
    assert r.status_code == 400 and b"CSRF" in r.data
    assert world.control.user("formy")["role"] == "viewer"
    r = client.post("/access/users/formy/role", data={"role": "data-engineer", "csrf_token": token})
    assert r.status_code == 302 and "ok=1" in r.location
    assert world.control.user("formy")["role"] == "data-engineer"
    r = client.put("/api/v1/users/formy/role", json={"role": "viewer"})  # JSON, cookie: CSRF too
    assert r.status_code == 400
    r = client.put("/api/v1/users/formy/role", json={"role": "viewer"},
                   headers={"X-CSRFToken": token})  # fmt: skip
    assert r.status_code == 200 and r.get_json()["role"] == "viewer"


def test_nobody_changes_their_own_role_over_http(world, web):
    client, token, _ = sign_in(web, "root")
    r = client.post("/access/users/root/role", data={"role": "viewer", "csrf_token": token})
    assert r.status_code == 302 and "ok=0" in r.location and "own" in r.location
    r = client.put("/api/v1/users/root/role", json={"role": "viewer"},
                   headers={"X-CSRFToken": token})  # fmt: skip
    assert r.status_code == 403
    enrol(world, "climber", "data-scientist")
    client, token, _ = sign_in(web, "climber")
    r = client.post("/access/users/climber/role", data={"role": "admin", "csrf_token": token})
    assert r.status_code == 403
    assert world.control.user("root")["role"] == "admin"
    assert world.control.user("climber")["role"] == "data-scientist"


def test_repeated_failures_get_429_and_every_attempt_is_audited(world, web):
    enrol(world, "target", "viewer")
    for _ in range(5):
        _, _, r = sign_in(web, "target", "wrong password!!", address="10.9.9.9")
        assert r.status_code == 401
    _, _, r = sign_in(web, "target", PASSWORD, address="10.9.9.9")  # right, but too late
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    failed = world.control.audit_find("auth.login_failed", "target")
    assert len(failed) == 6 and {e["details"]["address"] for e in failed} == {"10.9.9.9"}
    assert failed[-1]["details"]["reason"] == "rate limited"
    assert not any("wrong password" in str(e["details"]) for e in failed)
    _, _, r = sign_in(web, "target", address="10.9.9.10")  # the user's own limit holds too
    assert r.status_code == 429
    other = Appliance.open({"home": str(world.home)})  # and in another process, or restarted
    try:
        with pytest.raises(auth_service.TooManyAttempts):
            other.auth.login("target", PASSWORD, "10.9.9.11")
    finally:
        other.close()
    _, _, r = sign_in(web, "root", "wrong password!!", address="10.9.9.12")  # others: unaffected
    assert r.status_code == 401
    logins = world.control.audit_find("auth.login", "root")
    assert logins and "password" not in str(logins[-1]["details"])


def test_next_never_leaves_the_site(web):
    for target in ("//evil.example", "https://evil.example/x", "/\\evil.example",
                   "http:/evil", "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1", ""):  # fmt: skip
        assert safe_next(target) == "/"
    assert safe_next("/models?x=1") == "/models?x=1"
    client = web.test_client()
    token = csrf_of(client.get("/login?next=//evil.example").get_data(as_text=True))
    r = client.post("/login", data={"name": "root", "password": PASSWORD, "csrf_token": token,
                                    "next": "https://evil.example"})  # fmt: skip
    assert r.status_code == 302 and r.location == "/"


def test_path_traversal_in_names_is_a_4xx(world, web):
    client = web.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token(world)}"
    for path in ("/api/v1/models/..%2f..%2fetc/predict", "/api/v1/models/%2e%2e/predict",
                 "/v2/models/..%2Fcontrol.db/infer", "/models/%2e%2e/1"):  # fmt: skip
        r = client.post(path, json={"records": [RECORD]}) if "predict" in path or "infer" in path \
            else client.get(path)  # fmt: skip
        assert 400 <= r.status_code < 500, (path, r.status_code)
    for name in ("../x", "%2e%2e", "a/b"):
        r = client.post("/api/v1/users", json={"name": name, "role": "viewer"})
        assert r.status_code == 400
        r = client.post("/api/v1/tokens", json={"name": "t", "role": "viewer", "models": [name]})
        assert r.status_code == 400
    assert client.get("/enrol?token=../../etc/passwd").status_code == 404


# -- in the browser --------------------------------------------------------------------


@pytest.mark.browser
def test_first_start_sign_in_and_a_token_in_the_browser(home, start_server, browser):  # noqa: F811
    server = start_server(home)
    assert "/enrol?token=" not in server.log.read_text()  # not a terminal: no secret in the log
    link = re.search(
        r"http://\S+/enrol\?token=\S+", (home / "first-admin-enrolment.txt").read_text()
    )[0]
    page = browser.new_page()
    page.goto(server.url + "/models")
    assert page.url.startswith(server.url + "/login?next=")  # not signed in: the sign-in page
    page.goto(link)  # the one step `make run` leaves a newcomer: the printed link
    assert "Welcome, admin" in page.locator("h1").inner_text()
    page.fill("#enrol-password", PASSWORD)
    page.fill("#enrol-confirm", PASSWORD)
    page.click("#enrol-submit")
    page.wait_for_url(server.url + "/")
    assert page.locator("#signed-in").inner_text() == "admin"
    page.click("#nav-access")
    expect(page).to_have_title("Access · Falaj")
    page.fill("#token-name", "ci")
    page.select_option("#token-role", "viewer")
    page.fill("#token-expires", "30d")
    page.click("#create-token button[type=submit]")
    secret = page.locator("#secret").inner_text()
    req = urllib.request.Request(server.url + "/api/v1/models",
                                 headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and "models" in json.loads(r.read())
    page.goto(server.url + "/access")
    token_id = "_".join(secret.split("_", 2)[:2])  # flj_<id>; the secret part may hold "_"
    assert page.locator(f"#token-{token_id} .state").inner_text() == "active"
    assert secret not in page.content()  # shown once
    page.once("dialog", lambda d: d.accept())  # the revoke button asks first
    page.click(f"#token-{token_id} button.revoke")
    expect(page.locator(f"#token-{token_id} .state")).to_have_text("revoked")
    # sign out, then in again through the form; a wrong password is refused
    page.click("#sign-out")
    page.wait_for_url(server.url + "/login")
    page.fill("#login-name", "admin")
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    assert "wrong user name or password" in page.locator("#login-error").inner_text()
    page.fill("#login-name", "admin")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(server.url + "/")
    assert page.locator("#nav-access").is_visible()
    page.close()
