"""Users, enrolment, API tokens and sessions: the accounts behind ``Actor``.

- Users have a role and an argon2id password hash; there are no default credentials. A
  new user (and the first administrator, printed by ``falaj run`` on a home without
  one) gets a one-time enrolment link, valid ``ENROLMENT_HOURS``, where they set their
  own password; no password ever travels on a command line.
- API tokens are 32 random bytes shown once, stored as SHA-256 (right for a
  high-entropy secret, and fast on the serving path), listed by their id prefix,
  scoped to a role and optionally to models, expiring and revocable. Lookups are
  cached in-process for ``TOKEN_CACHE_S`` seconds, so a revoke from another process
  takes effect within that.
- Sessions are rows in control.db; the cookie holds a random id stored hashed. They end
  after ``session_idle_minutes`` without a request (at most 30), after
  ``session_hours`` in all, on logout, and when the user is disabled or their role
  changes.
- Logins are rate-limited: after ``LOGIN_ATTEMPTS`` failures for one user (counted from
  the audit chain since their last sign-in, so across processes and restarts) or from one
  address (in this process) within ``LOGIN_WINDOW_S``, further attempts get
  ``TooManyAttempts`` (429, Retry-After). Each attempt is audited; the password never is.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sys
import threading
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.auth import ROLES, SYSTEM, USER_ROLES, Actor, Forbidden, Unauthenticated, require
from appliance.durations import parse_duration
from appliance.errors import BadInput, FalajError, NotFound
from appliance.files import publish

if TYPE_CHECKING:
    from appliance.stores import ControlStore

ENROLMENT_HOURS = 24
FIRST_LINK_FILE = "first-admin-enrolment.txt"
TOKEN_CACHE_S = 2.0
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW_S = 15 * 60
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is an attack
TOKEN_PREFIX = "flj_"
USER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
# common passwords of 12 characters or more (shorter ones fail the length rule anyway)
COMMON = frozenset("""
adminadmin12 administrator administrator1 password1234 password12345 password123456
passwordpassword 123456789012 1234567890123 qwertyuiop12 qwertyuiopasdf 1q2w3e4r5t6y
letmein12345 changeme1234 welcome12345 iloveyou1234 falajfalaj12 falajadmin123
admin1234567 admin123456789 p@ssword1234 p@ssw0rd1234 password1! passw0rd1234
""".split())  # fmt: skip  # noqa: SIM905
_hasher = PasswordHasher()  # argon2id, RFC 9106's low-memory profile


class UserExists(FalajError):
    status = 409


class TooManyAttempts(FalajError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def now() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_RE.match(name):
        raise BadInput(
            f"user name {str(name)[:80]!r} is not valid: use a letter, then letters, digits, "
            "'_', '.' or '-' (at most 63)"
        )
    return name


def check_role(role: str) -> str:
    if role not in USER_ROLES:
        raise BadInput(f"unknown role {str(role)[:40]!r}: choose one of {', '.join(USER_ROLES)}")
    return role


def check_password(name: str, password: str) -> None:
    """The password policy: at least 12 characters, not the name, not a common password."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise BadInput(f"password: use at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"password: use at most {MAX_PASSWORD} characters")
    low = password.lower()
    if name and len(low.replace(name.lower(), "")) < 8:
        raise BadInput("password: too close to the user name; choose another")
    if low in COMMON or len(set(low)) < 4:
        raise BadInput("password: too common or too simple; choose another")


class AuthService:
    def __init__(self, control: ControlStore, settings: dict[str, Any]) -> None:
        self.control = control
        self.settings = settings
        self._tokens: dict[str, tuple[float, Actor | None]] = {}
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    # -- settings ----------------------------------------------------------------

    @property
    def idle(self) -> timedelta:
        minutes = min(30, int(self.settings.get("session_idle_minutes", 30)))
        return timedelta(minutes=max(1, minutes))

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=max(1, int(self.settings.get("session_hours", 12))))

    def base_url(self) -> str:
        host, port = self.settings.get("host", "127.0.0.1"), self.settings.get("port", 8080)
        tls, loopback = self.settings.get("tls", "off"), host in ("127.0.0.1", "localhost", "::1")
        scheme = (
            "https" if tls is True or tls == "on" or (tls == "auto" and not loopback) else "http"
        )
        shown = f"[{host}]" if ":" in str(host) else host
        return f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{port}"

    # -- users -------------------------------------------------------------------

    def users(self, actor: Actor) -> list[dict[str, Any]]:
        require(actor, "user.manage")
        return [u | {"disabled": bool(u["disabled"]), "enrolled": bool(u["enrolled"])}
                for u in self.control.users()]  # fmt: skip

    def _user(self, name: str) -> dict[str, Any]:
        row = self.control.user(check_user_name(name))
        if row is None:
            raise NotFound(f"no user {name!r}; see `falaj users list`")
        return row

    def _enrolment(self, tx: Any, user: str) -> str:
        raw = secrets.token_urlsafe(32)
        at = now()
        tx.retire_enrolments(user, stamp(at))
        tx.insert_enrolment(
            sha256(raw), user, stamp(at), stamp(at + timedelta(hours=ENROLMENT_HOURS))
        )
        return raw

    def enrol_link(self, raw: str, base_url: str | None = None) -> str:
        return f"{base_url or self.base_url()}/enrol?token={raw}"

    def add_user(self, name: str, role: str, actor: Actor) -> dict[str, Any]:
        """Add a user with a role; the one-time enrolment token they set a password with."""
        require(actor, "user.manage")
        check_user_name(name), check_role(role)
        if self.control.user(name) is not None:
            raise UserExists(f"user {name!r} exists already")
        with self.control.transaction() as tx:
            tx.insert_user(name, role, stamp(now()), str(actor))
            raw = self._enrolment(tx, name)
            tx.append_audit(actor, "user.add", name, {"role": role})
        return {"name": name, "role": role, "enrolment": raw, "link": self.enrol_link(raw),
                "expires_in_hours": ENROLMENT_HOURS}  # fmt: skip

    def reenrol(self, name: str, actor: Actor) -> dict[str, Any]:
        """A new enrolment link (a forgotten password); earlier links stop working."""
        require(actor, "user.manage")
        user = self._user(name)
        with self.control.transaction() as tx:
            raw = self._enrolment(tx, name)
            tx.append_audit(actor, "user.enrolment", name, {})
        return {"name": name, "role": user["role"], "enrolment": raw,
                "link": self.enrol_link(raw), "expires_in_hours": ENROLMENT_HOURS}  # fmt: skip

    def set_role(self, name: str, role: str, actor: Actor) -> dict[str, Any]:
        require(actor, "user.manage")
        check_role(role)
        user = self._user(name)
        if actor.kind == "user" and actor.name == name:
            raise Forbidden("you cannot change your own role; ask another administrator")
        with self.control.transaction() as tx:
            tx.set_user_role(name, role)
            tx.end_user_sessions(name, stamp(now()))  # the next request signs in afresh
            tx.append_audit(actor, "user.role", name, {"role": role, "was": user["role"]})
        return {"name": name, "role": role, "was": user["role"]}

    def set_disabled(self, name: str, disabled: bool, actor: Actor) -> dict[str, Any]:
        require(actor, "user.manage")
        self._user(name)
        if disabled and actor.kind == "user" and actor.name == name:
            raise Forbidden("you cannot disable yourself; ask another administrator")
        with self.control.transaction() as tx:
            tx.set_user_disabled(name, disabled)
            if disabled:
                tx.end_user_sessions(name, stamp(now()))
                tx.retire_enrolments(name, stamp(now()))
            tx.append_audit(actor, "user.disable" if disabled else "user.enable", name, {})
        return {"name": name, "disabled": disabled}

    def user_actor(self, name: str) -> Actor:
        """The principal a named, enabled user acts as (``falaj --as USER``)."""
        user = self._user(name)
        if user["disabled"]:
            raise Forbidden(f"user {name!r} is disabled")
        return Actor("user", name, user["role"])

    def enrolment(self, raw: str) -> dict[str, Any]:
        """The user an unused, unexpired enrolment token is for (the enrol page's name)."""
        row = self.control.enrolment(sha256(raw or ""))
        if row is None or row["used_at"] or row["expires_at"] < stamp(now()):
            raise NotFound("this enrolment link is not valid: used, expired or mistyped; ask "
                           "an administrator for a new one (`falaj users enrol NAME`)")  # fmt: skip
        return self._user(row["user"])

    def enrol(self, raw: str, password: str, address: str = "") -> tuple[Actor, str]:
        """Set a password with a one-time enrolment token; the user and a new session."""
        user = self.enrolment(raw)
        check_password(user["name"], password)
        hashed = _hasher.hash(password)
        with self.control.transaction() as tx:
            at = now()
            used = tx.use_enrolment(sha256(raw), stamp(at))
            if used is None or used["expires_at"] < stamp(at):  # raced another use of the link
                raise NotFound("this enrolment link is not valid: used or expired")
            tx.set_password(user["name"], hashed, stamp(at))
            actor = Actor("user", user["name"], user["role"])
            tx.append_audit(actor, "user.enrol", user["name"], {"address": address})
            session = self._new_session(tx, user["name"], address, at)
        with contextlib.suppress(OSError):
            if raw in self.first_link_file.read_text():
                self.first_link_file.unlink()  # the first start's link is used: gone
        return actor, session

    # -- first start -------------------------------------------------------------

    @property
    def first_link_file(self) -> Path:
        return Path(self.settings["home"]) / FIRST_LINK_FILE

    def first_start(
        self, say: Any, base_url: str | None = None, terminal: bool | None = None
    ) -> str | None:
        """On a home without an enrolled administrator, make a one-time enrolment link for
        one (user ``admin``, created when there are no users); the link, or None.

        On a terminal (``make run``) the link is printed. Otherwise (systemd, docker: the
        log is kept) it goes to ``HOME/first-admin-enrolment.txt`` (0600, removed once
        used) and only that file's path is printed: no live secret in a log."""
        users = self.control.users()
        if any(u["role"] == "admin" and u["enrolled"] and not u["disabled"] for u in users):
            return None
        pending = [u for u in users if u["role"] == "admin" and not u["disabled"]]
        name = pending[0]["name"] if pending else "admin"
        with self.control.transaction() as tx:
            if not pending:
                if any(u["name"] == name for u in users):
                    return None  # an "admin" of another role: leave it to `falaj users`
                tx.insert_user(name, "admin", stamp(now()), str(SYSTEM))
                tx.append_audit(SYSTEM, "user.add", name, {"role": "admin", "first_start": True})
            raw = self._enrolment(tx, name)
        link = self.enrol_link(raw, base_url)
        text = (f"open {link} to set the password of administrator {name!r} "
                f"(one use, valid {ENROLMENT_HOURS} h)")  # fmt: skip
        if terminal is None:
            terminal = sys.stderr.isatty()
        if terminal:
            say(f"first start: {text}")
            return link
        path = publish(self.first_link_file, f"Falaj first start: {text}\n")
        say(f"first start: the administrator's one-time enrolment link is in {path} "
            "(readable by this service's user only; removed once used)")  # fmt: skip
        return link

    # -- login, sessions ---------------------------------------------------------

    def _limited(self, keys: list[tuple[str, str]], name: str) -> int:
        """Seconds until another attempt is allowed (0: now)."""
        t = time.monotonic()
        wait = 0
        with self._lock:
            for k in keys:
                q = self._failures[k]
                while q and q[0] < t - LOGIN_WINDOW_S:
                    q.popleft()
                if len(q) >= LOGIN_ATTEMPTS:
                    wait = max(wait, int(q[0] + LOGIN_WINDOW_S - t) + 1)
        return max(wait, self._user_limited(name))

    def _user_limited(self, name: str) -> int:
        """The per-user limit from the audit chain, so it holds across processes and
        restarts: failures since the user's last sign-in, within the window."""
        at = now()
        failed = self.control.login_failures(name, stamp(at - timedelta(seconds=LOGIN_WINDOW_S)))
        if len(failed) < LOGIN_ATTEMPTS:
            return 0
        oldest = datetime.fromisoformat(failed[-LOGIN_ATTEMPTS])
        return max(1, int((oldest - at).total_seconds()) + LOGIN_WINDOW_S + 1)

    def login(self, name: str, password: str, address: str = "") -> tuple[Actor, str]:
        """Check a user's password; the user and a new session id (raw, for the cookie)."""
        name = str(name or "")[:80]
        keys = [("user", name.lower()), ("address", address)]
        wait = self._limited(keys, name)
        details = {"address": address}
        if wait:
            self._audit_failure(name, details | {"reason": "rate limited"})
            raise TooManyAttempts(f"too many failed sign-ins; try again in {wait} s", wait)
        user = self.control.user(name) if USER_RE.match(name) else None
        ok = False
        if user is not None and user["password_hash"] and not user["disabled"]:
            try:
                ok = _hasher.verify(user["password_hash"], password or "")
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            _hasher.hash("timing: as slow as a real check")  # no user enumeration by time
        if not ok:
            with self._lock:
                for k in keys:
                    self._failures[k].append(time.monotonic())
            self._audit_failure(name, details | {"reason": "disabled" if user and user["disabled"]
                                                 else "bad name or password"})  # fmt: skip
            raise Unauthenticated("wrong user name or password")
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
        actor = Actor("user", user["name"], user["role"])
        with self.control.transaction() as tx:
            session = self._new_session(tx, user["name"], address, now())
            tx.append_audit(actor, "auth.login", user["name"], details)
        return actor, session

    def _audit_failure(self, name: str, details: dict[str, Any]) -> None:
        with self.control.transaction() as tx:
            tx.append_audit(SYSTEM, "auth.login_failed", name or "-", details)

    def _new_session(self, tx: Any, user: str, address: str, at: datetime) -> str:
        raw = secrets.token_urlsafe(32)
        tx.insert_session({"id_hash": sha256(raw), "user": user, "created_at": stamp(at),
                           "last_seen": stamp(at), "expires_at": stamp(at + self.lifetime),
                           "address": address})  # fmt: skip
        return raw

    def session_actor(self, raw: str) -> Actor | None:
        """The user of a live session, or None (ended, idle too long, past its lifetime,
        user disabled). Marks it seen, at most once a minute."""
        if not raw or len(raw) > 100:
            return None
        h = sha256(raw)
        s = self.control.session(h)
        at = now()
        if s is None or s["ended_at"] or s["disabled"]:
            return None
        if s["expires_at"] < stamp(at) or s["last_seen"] < stamp(at - self.idle):
            with self.control.transaction() as tx:
                tx.end_session(h, stamp(at))
            return None
        if s["last_seen"] < stamp(at - timedelta(seconds=60)):
            with self.control.transaction() as tx:
                tx.touch_session(h, stamp(at))
        return Actor("user", s["user"], s["role"])

    def logout(self, raw: str, actor: Actor) -> None:
        with self.control.transaction() as tx:
            tx.end_session(sha256(raw or ""), stamp(now()))
            tx.append_audit(actor, "auth.logout", actor.name, {})

    # -- API tokens --------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: str,
        actor: Actor,
        models: list[str] | None = None,
        expires: str | None = None,
    ) -> dict[str, Any]:
        """A new API token; its secret is in the answer and nowhere else, ever."""
        require(actor, "token.manage")
        check_user_name(name), check_role(role)
        mine = ROLES.get(actor.effective_role or "", frozenset())
        if not ROLES[role] <= mine:
            raise Forbidden(f"a token cannot hold more than its maker's role: {role} has "
                            f"permissions {actor.effective_role} lacks")  # fmt: skip
        from appliance.names import check_name

        scope = sorted({check_name("model", m) for m in models}) if models else None
        if actor.models is not None and (scope is None or not set(scope) <= set(actor.models)):
            raise Forbidden(f"a token scoped to {', '.join(actor.models)} can only make tokens "
                            "scoped within those models")  # fmt: skip
        at = now()
        expires_at = None
        if expires:
            span = parse_duration(expires, "--expires")
            if span <= timedelta(0):
                raise BadInput("--expires: give a positive duration, like 30d or 12h")
            expires_at = stamp(at + span)
        token_id = TOKEN_PREFIX + secrets.token_hex(4)
        raw = f"{token_id}_{secrets.token_urlsafe(32)}"
        row = {"id": token_id, "name": name, "token_hash": sha256(raw), "role": role,
               "models": scope, "created_at": stamp(at), "created_by": str(actor),
               "expires_at": expires_at}  # fmt: skip
        with self.control.transaction() as tx:
            tx.insert_token(row)
            tx.append_audit(actor, "token.create", token_id,
                            {"name": name, "role": role, "models": scope,
                             "expires_at": expires_at})  # fmt: skip
        return {k: v for k, v in row.items() if k != "token_hash"} | {"token": raw}

    def tokens(self, actor: Actor) -> list[dict[str, Any]]:
        require(actor, "token.manage")
        at = stamp(now())
        return [t | {"active": not t["revoked_at"] and not (t["expires_at"] and t["expires_at"] < at)}
                for t in self.control.tokens()]  # fmt: skip

    def revoke_token(self, token_id: str, actor: Actor) -> dict[str, Any]:
        require(actor, "token.manage")
        row = self.control.token(str(token_id)[:40])
        if row is None:
            raise NotFound(f"no token {str(token_id)[:40]!r}; see `falaj tokens list`")
        if row["revoked_at"]:
            return {"id": row["id"], "revoked_at": row["revoked_at"], "changed": False}
        at = stamp(now())
        with self.control.transaction() as tx:
            tx.revoke_token(row["id"], at, str(actor))
            tx.append_audit(actor, "token.revoke", row["id"], {"name": row["name"]})
        with self._lock:
            self._tokens.clear()
        return {"id": row["id"], "revoked_at": at, "changed": True}

    def token_actor(self, raw: str) -> Actor | None:
        """The principal of a bearer token, or None (unknown, revoked, expired). Cached for
        ``TOKEN_CACHE_S`` seconds: one dict lookup on the serving path."""
        if not raw or len(raw) > 200:
            return None
        h = sha256(raw)
        t = time.monotonic()
        hit = self._tokens.get(h)
        if hit is not None and hit[0] > t:
            return hit[1]
        row = self.control.token_by_hash(h)
        actor = None
        live = row is not None and not row["revoked_at"]
        if live and (not row["expires_at"] or row["expires_at"] > stamp(now())):
            models = tuple(row["models"]) if row["models"] else None
            actor = Actor("token", row["name"], row["role"], models)
            if row["expires_at"]:  # never cache past the expiry
                left = (datetime.fromisoformat(row["expires_at"]) - now()).total_seconds()
                t = t + min(0.0, left - TOKEN_CACHE_S)
        with self._lock:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[h] = (t + TOKEN_CACHE_S, actor)
        return actor
