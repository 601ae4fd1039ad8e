"""control.db: users, their one-time enrolment links, API tokens and dashboard sessions.

A mixin pair like ``runs.py``: ``AuthTx`` joins ``ControlTx``, ``AuthReads`` joins
``ControlStore``. Nothing secret is stored as given: passwords as argon2id hashes,
enrolment links, API tokens and session ids as SHA-256 hashes (each a random 32 bytes,
so a fast hash is right), looked up by hash.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0011_auth",
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password_hash TEXT,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            password_set_at TEXT
        );
        CREATE TABLE enrolments (
            token_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name),
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
        );
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            models TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT,
            revoked_by TEXT
        );
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name),
            created_at TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            ended_at TEXT,
            address TEXT
        );
        CREATE INDEX sessions_by_user ON sessions (user)
        """,
    ),
]


def _token(row: dict[str, Any]) -> dict[str, Any]:
    row["models"] = json.loads(row["models"]) if row["models"] else None
    return row


class AuthTx:
    conn: Any

    def insert_user(self, name: str, role: str, at: str, by: str) -> None:
        self.conn.execute(
            "INSERT INTO users (name, role, created_at, created_by) VALUES (?, ?, ?, ?)",
            (name, role, at, by),
        )

    def set_user_role(self, name: str, role: str) -> None:
        self.conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))

    def set_user_disabled(self, name: str, disabled: bool) -> None:
        self.conn.execute("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))

    def set_password(self, name: str, password_hash: str, at: str) -> None:
        self.conn.execute(
            "UPDATE users SET password_hash = ?, password_set_at = ? WHERE name = ?",
            (password_hash, at, name),
        )

    def insert_enrolment(self, token_hash: str, user: str, at: str, expires_at: str) -> None:
        self.conn.execute(
            "INSERT INTO enrolments (token_hash, user, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, user, at, expires_at),
        )

    def use_enrolment(self, token_hash: str, at: str) -> dict[str, Any] | None:
        """Mark an unused enrolment used; the row as it was, or None when there is none
        unused (a second use of the same link finds nothing)."""
        row = self.conn.execute(
            "SELECT * FROM enrolments WHERE token_hash = ? AND used_at IS NULL", (token_hash,)
        ).fetchone()
        if row is None:
            return None
        self.conn.execute(
            "UPDATE enrolments SET used_at = ? WHERE token_hash = ?", (at, token_hash)
        )
        return dict(row)

    def retire_enrolments(self, user: str, at: str) -> None:
        self.conn.execute(
            "UPDATE enrolments SET used_at = ? WHERE user = ? AND used_at IS NULL", (at, user)
        )

    def insert_token(self, token: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO api_tokens (id, name, token_hash, role, models, created_at, created_by, "
            "expires_at) VALUES (:id, :name, :token_hash, :role, :models, :created_at, "
            ":created_by, :expires_at)",
            token | {"models": json.dumps(token["models"]) if token.get("models") else None},
        )

    def revoke_token(self, token_id: str, at: str, by: str) -> None:
        self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?", (at, by, token_id)
        )

    def insert_session(self, session: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO sessions (id_hash, user, created_at, last_seen, expires_at, address) "
            "VALUES (:id_hash, :user, :created_at, :last_seen, :expires_at, :address)",
            session,
        )

    def touch_session(self, id_hash: str, at: str) -> None:
        self.conn.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (at, id_hash))

    def end_session(self, id_hash: str, at: str) -> None:
        self.conn.execute(
            "UPDATE sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL", (at, id_hash)
        )

    def end_user_sessions(self, user: str, at: str) -> int:
        cur = self.conn.execute(
            "UPDATE sessions SET ended_at = ? WHERE user = ? AND ended_at IS NULL", (at, user)
        )
        return cur.rowcount


class AuthReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def users(self) -> list[dict[str, Any]]:
        return self.query(
            "SELECT name, role, disabled, created_at, created_by, password_set_at, "
            "password_hash IS NOT NULL AS enrolled FROM users ORDER BY name"
        )

    def user(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM users WHERE name = ?", (name,))
        return rows[0] if rows else None

    def user_count(self) -> int:
        return self.query("SELECT count(*) AS n FROM users")[0]["n"]

    def enrolment(self, token_hash: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM enrolments WHERE token_hash = ?", (token_hash,))
        return rows[0] if rows else None

    def tokens(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, name, role, models, created_at, created_by, expires_at, revoked_at, "
            "revoked_by FROM api_tokens ORDER BY created_at, id"
        )
        return [_token(r) for r in rows]

    def token(self, token_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def token_by_hash(self, token_hash: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return _token(rows[0]) if rows else None

    def session(self, id_hash: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT s.*, u.role, u.disabled FROM sessions s JOIN users u ON u.name = s.user "
            "WHERE s.id_hash = ?",
            (id_hash,),
        )
        return rows[0] if rows else None

    def login_failures(self, name: str, since: str) -> list[str]:
        """When ``name``'s sign-ins failed since ``since`` and since their last success,
        oldest first (from the audit chain: every attempt is an event)."""
        rows = self.query(
            "SELECT ts FROM audit_events WHERE action = 'auth.login_failed' AND subject = ? "
            "AND ts > ? AND seq > coalesce((SELECT max(seq) FROM audit_events "
            "WHERE action = 'auth.login' AND subject = ?), 0) ORDER BY seq",
            (name, since, name),
        )
        return [r["ts"] for r in rows]
