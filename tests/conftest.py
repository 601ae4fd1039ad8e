"""Shared fixtures: real stores in tmp_path, the CLI through CliRunner, and a real
server on a free port."""

import os
import shutil

# No real GPU here: numba.cuda kernels run on the CPU simulator. On a GPU box the
# real device is used instead. This must happen before numba is first imported.
if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner
from hypothesis import settings as hypothesis_settings

from appliance import demo
from appliance.auth import Actor
from appliance.cli import cli
from appliance.core import Appliance

# Property tests draw the same examples on every run, so CI cannot fail on a draw that
# no developer saw. HYPOTHESIS_PROFILE=explore searches afresh (run it when changing kernels).
hypothesis_settings.register_profile("falaj", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("explore", deadline=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "falaj"))

ACTOR = Actor("test", "pytest")
FEATURES = [
    "age", "income", "employment_years", "loan_amount", "debt_to_income",
    "credit_utilization", "num_credit_lines", "num_late_payments",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    for var in ("FALAJ_HOME", "FALAJ_MASTER_KEY_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


class Falaj:
    """Runs `falaj --home HOME ...` in-process and returns click's Result."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict | None = None):
        return self.runner.invoke(
            cli, ["--home", str(self.home), *map(str, args)], env=env, catch_exceptions=False
        )

    def ok(self, *args: str, env: dict | None = None):
        result = self(*args, env=env)
        assert result.exit_code == 0, (
            f"falaj {' '.join(map(str, args))}: {result.output}{result.stderr}"
        )
        return result


@pytest.fixture
def falaj(home) -> Falaj:
    return Falaj(home)


@pytest.fixture
def credit_csv(tmp_path) -> Path:
    """3,000 rows of the demo credit-risk data as CSV (real signal, drift late on)."""
    path = tmp_path / "credit.csv"
    pacsv.write_csv(demo.credit_risk(3000, seed=3), path)
    return path


@pytest.fixture
def app(home):
    """An initialised Appliance over real stores, closed after the test."""
    appliance = Appliance.open({"home": str(home)})
    appliance.init(ACTOR)
    yield appliance
    appliance.close()


def find_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_token(app: Appliance, name: str = "pytest-admin") -> str:
    """A new admin API token on ``app`` (the local operator holds the master key)."""
    return app.auth.create_token(name, "admin", ACTOR)["token"]


def admin_client(app: Appliance, config: dict | None = None):
    """Flask's test client over ``app``, sending an admin API token."""
    from webui import create_app

    c = create_app(app, {"TESTING": True} | (config or {})).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token(app)}"
    return c


class Server:
    def __init__(self, home: Path, *extra: str) -> None:
        self.home = home
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"server-{self.port}.log"
        self._out = open(self.log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "--home",
                str(home),
                "run",
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 90.0) -> "Server":
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return self.authenticated()
            except urllib.error.HTTPError:  # it answers: a 503 is a degraded server, not a dead one
                return self.authenticated()
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server did not answer in {timeout}s:\n{self.log.read_text()}")

    token: str | None = None  # an admin API token, once the server answers

    def authenticated(self) -> "Server":
        """Make an admin API token beside the running server (control.db opens beside it)."""
        app = Appliance.open({"home": str(self.home)})
        try:
            self.token = admin_token(app, f"pytest-{self.port}")
        finally:
            app.close()
        return self

    def enrol_link(self, name: str, role: str = "admin") -> str:
        """A one-time enrolment link for a new user of this server."""
        app = Appliance.open({"home": str(self.home)})
        try:
            r = app.auth.add_user(name, role, ACTOR)
        finally:
            app.close()
        return f"{self.url}/enrol?token={r['enrolment']}"

    def headers(self) -> dict[str, str]:
        """The headers that authenticate a raw HTTP request to this server (admin)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in self.headers().items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def start_server():
    servers = []

    def start(home: Path, *extra: str) -> Server:
        s = Server(home, *extra)
        servers.append(s)
        return s.wait()

    yield start
    for s in servers:
        s.stop()


# falaj ingest's options for the credit data set as table "loans"
LOANS = ("--table", "loans", "--entity", "customer_id", "--timestamp", "event_time")
# falaj train on its numeric columns only: the serving tests' records hold those
TRAIN = ("train", "--table", "loans", "--label", "default", "--name", "credit",
         "--features", ",".join(FEATURES))  # fmt: skip
RECORD = dict.fromkeys(FEATURES, 1.0) | {"income": 15000.0, "loan_amount": 40000.0}


@pytest.fixture
def trained(app, credit_csv):
    """An appliance with the credit data ingested and model credit@1 registered."""
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    return app


@pytest.fixture
def client(trained):
    """Flask's test client over `trained`, with credit@1 deployed."""
    from webui import create_app

    trained.serving.deploy("credit", 1, ACTOR)
    c = create_app(trained, {"TESTING": True}).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token(trained)}"
    return c
