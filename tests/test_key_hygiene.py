"""No key material in process arguments, environment, logs or error messages.

A canary master key (new each run) is given by file (FALAJ_MASTER_KEY_FILE); a real
server runs on it and answers good and bad requests; then its /proc cmdline and
environ and its whole log are searched for the key and every key derived from it, raw
and in hex. Every wrong-key path of the CLI is run with another key, and its error
must say what is wrong without showing either key."""

import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance import keys, settings
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE
from tests.conftest import Falaj

PURPOSES = (CONTROL_FILE, FEATURES_FILE, "bundle-signing", "bundle-encryption", "web-session",
            "audit-checkpoint", "selftest-signing", "backup-signing")  # fmt: skip


def forms(master: bytes) -> list[bytes]:
    """The key and each derived key: raw, hex and upper-case hex."""
    out = []
    for k in (master, *(keys.derive(master, p) for p in PURPOSES)):
        out += [k, k.hex().encode(), k.hex().upper().encode()]
    return out


def leaks(data: bytes, master: bytes) -> list[str]:
    return [f.hex()[:12] for f in forms(master) if f in data]


@pytest.fixture
def canary(tmp_path, home, monkeypatch) -> bytes:
    """A home whose master key comes from a file outside it, set in the environment."""
    key_file = tmp_path / "secret" / "master.key"
    key_file.parent.mkdir()
    master = secrets.token_bytes(32)
    keys.write_key(key_file, master)
    monkeypatch.setenv("FALAJ_MASTER_KEY_FILE", str(key_file))
    Falaj(home).ok("init")
    return master


def test_a_running_server_shows_no_key_in_its_arguments_environment_or_log(
    canary, home, start_server
):
    server = start_server(home)
    for path, body in (("/healthz", None), ("/no-such-page", None),
                       ("/api/v1/models/nope/predict", b"{not json"),
                       ("/api/v1/models/nope/predict", b'{"records": [{"a": 1}]}')):  # fmt: skip
        req = urllib.request.Request(server.url + path, data=body, method="POST" if body else "GET")
        for k, v in server.headers().items():
            req.add_header(k, v)
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except urllib.error.HTTPError as e:
            assert not leaks(e.read(), canary)
    pid = server.proc.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"FALAJ_MASTER_KEY_FILE=" in environ  # the file's name, not its contents
    assert not leaks(cmdline, canary) and not leaks(environ, canary)
    server.stop()
    log = server.log.read_bytes()
    assert b"serving on" in log
    assert not leaks(log, canary)


@pytest.mark.parametrize(
    "args", [("status",), ("check",), ("audit", "verify"), ("models", "list"), ("rekey",),
             ("selftest",)],
)  # fmt: skip
def test_every_wrong_key_error_names_the_problem_and_no_key(canary, home, tmp_path, args):
    wrong = secrets.token_bytes(32)
    wrong_file = tmp_path / "wrong.key"
    keys.write_key(wrong_file, wrong)
    r = Falaj(home)(*args, env={"FALAJ_MASTER_KEY_FILE": str(wrong_file)})
    assert r.exit_code == 2, r.output
    assert "wrong master key" in r.stderr
    text = (r.stdout + r.stderr).encode()
    assert not leaks(text, canary) and not leaks(text, wrong)


def test_a_malformed_or_missing_key_file_is_named_not_shown(canary, home, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not-a-key-" + canary.hex()[:20])  # near-key content must not echo back
    r = Falaj(home)("status", env={"FALAJ_MASTER_KEY_FILE": str(bad)})
    assert r.exit_code == 2 and "must hold 32 bytes or 64 hex digits" in r.stderr
    assert canary.hex()[:20] not in r.stderr
    r = Falaj(home)("status", env={"FALAJ_MASTER_KEY_FILE": str(tmp_path / "nope.key")})
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_no_setting_or_variable_takes_the_key_itself():
    names = {s.name for s in settings.SETTINGS}
    assert "master_key_file" in names
    assert not any(n in names for n in ("master_key", "key", "secret_key"))
