"""Residency: the process connects only to loopback and the allowed LAN networks, and
a sink outside them is refused when it is configured."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from appliance.compliance import residency
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.monitoring.alerts import check_webhook_url
from tests.conftest import ACTOR


@pytest.fixture(autouse=True)
def guard():
    residency.install(residency.DEFAULT_NETWORKS)
    yield
    residency.install(residency.DEFAULT_NETWORKS)


def test_a_public_destination_is_refused_before_the_syscall():
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,  # no network needed
        pytest.raises(PermissionError, match=r"8\.8\.8\.8:53 refused"),
    ):
        s.connect(("8.8.8.8", 53))
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s,
        pytest.raises(PermissionError, match="2001:4860:4860::8888"),
    ):
        s.connect_ex(("2001:4860:4860::8888", 443))


def test_loopback_and_lan_connections_work():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            conn, _ = server.accept()
            conn.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.168.1.20", 9))  # UDP connect sends nothing; allowed by the hook
        s.connect(("10.1.2.3", 9))


def test_the_allowed_networks_are_a_setting():
    residency.install("127.0.0.0/8")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(PermissionError, match="192.168.1.20"):
            s.connect(("192.168.1.20", 9))
        s.connect(("127.0.0.1", 9))
    with pytest.raises(BadInput, match="'10.0.0.0/33' is not a network"):
        residency.parse_networks("127.0.0.0/8, 10.0.0.0/33")


def test_the_appliance_installs_the_guard(tmp_path):
    app = Appliance.open({"home": str(tmp_path / "home"), "allowed_networks": "127.0.0.0/8"})
    try:
        assert [str(n) for n in residency.installed()] == ["127.0.0.0/8"]
    finally:
        app.close()


def test_the_cli_process_refuses_outbound_connections(tmp_path):
    code = ("import socket; from appliance.core import Appliance; "
            f"Appliance.open({{'home': {str(tmp_path / 'h')!r}}}); "
            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('1.1.1.1', 53))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "residency: outbound connection to 1.1.1.1:53 refused" in r.stderr


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "https://[2001:db8::1]/x",
                                 "http://169.254.169.254/latest"])  # fmt: skip
def test_a_public_sink_is_refused_at_configuration(url):
    with pytest.raises(BadInput, match="public address"):
        check_webhook_url(url)


def test_a_public_webhook_is_refused_by_the_monitoring_service(app):
    with pytest.raises(BadInput, match="8.8.8.8 is a public address"):
        app.monitoring.set_webhook("http://8.8.8.8/hook", ACTOR)
    check_webhook_url("http://192.168.1.5:9000/hook")  # a LAN sink is fine


def test_one_rule_for_addresses():
    assert residency.allowed("127.0.0.1") and residency.allowed("::1")
    assert residency.allowed("172.16.5.4") and residency.allowed("fd00::1")
    assert residency.allowed("::ffff:10.0.0.1")  # IPv4-mapped
    assert not residency.allowed("172.32.0.1") and not residency.allowed("8.8.8.8")
    assert not residency.allowed("not-an-address")
