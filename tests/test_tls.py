"""TLS: `falaj run` beyond loopback serves only HTTPS (TLS 1.2 and 1.3, never 1.1 or 1.0)
with a generated self-signed certificate or the configured one, refuses plain HTTP there,
and every answer carries the security headers (HSTS over HTTPS)."""

import http.client
import ipaddress
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from appliance import tls
from appliance.errors import BadInput
from tests.conftest import find_free_port

HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class TLSServer:
    """`falaj run --host 0.0.0.0` (TLS by default there), on a free port."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.home, self.port = home, find_free_port()
        self.log = home.parent / f"tls-server-{self.port}.log"
        self._out = open(self.log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--home", str(home), "run", "--host", "0.0.0.0",
             "--port", str(self.port), "--check-on-start", "false", *extra],
            stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.proc.poll() is None, f"server exited:\n{self.log.read_text()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if "serving on" in self.log.read_text():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text()}")

    def context(self, **versions) -> ssl.SSLContext:
        """A client trusting the server's certificate, limited to ``versions``."""
        ctx = ssl.create_default_context(cafile=str(self.home / "tls" / "cert.pem"))
        for k, v in versions.items():
            setattr(ctx, k, v)
        return ctx

    def get(self, path: str, ctx: ssl.SSLContext | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx or self.context(),
                                           timeout=10)  # fmt: skip
        conn.request("GET", path)
        return conn.getresponse()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("tls") / "home"
    grpc_port = find_free_port()
    s = TLSServer(home, "--grpc-port", str(grpc_port))
    s.grpc_port = grpc_port
    yield s
    s.stop()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_handshakes_succeed(server, version):
    ctx = server.context(minimum_version=version, maximum_version=version)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        assert s.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        cipher, _, bits = s.cipher()
        assert bits >= 128 and ("GCM" in cipher or "CHACHA20" in cipher)
    r = server.get("/healthz", ctx)
    assert r.status == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_10_and_11_are_refused(server, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # this client would speak them, if the server did
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as exc,
    ):
        ctx.wrap_socket(raw).do_handshake()
    # the server's protocol_version alert (not this client failing to offer the version)
    assert exc.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    # and the server still serves the next client
    assert server.get("/healthz").status == 200


def test_plain_http_to_the_tls_port_gets_no_answer_from_the_app(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        status, body = r.status, r.read()
    except (ConnectionError, http.client.HTTPException):
        return  # the connection was dropped: refused
    finally:
        conn.close()
    assert status == 400 and b"HTTPS" in body and b"models" not in body


def test_security_headers_and_hsts_over_https(server):
    for path in ("/healthz", "/", "/no-such-page"):
        r = server.get(path)
        r.read()
        for name, value in HEADERS.items():
            assert r.getheader(name) == value, (path, name)
        csp = r.getheader("Content-Security-Policy")
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert "object-src 'none'" in csp and "unsafe-inline" not in csp
        assert r.getheader("Strict-Transport-Security") == "max-age=31536000"


def test_generated_certificate_covers_the_host_and_its_key_is_private(server):
    folder = server.home / "tls"
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    # the client above verified the chain and host name against this very file
    assert "TLS: self-signed certificate" in server.log.read_text()
    assert "BEGIN" not in server.log.read_text()  # no PEM in the log


def test_plain_http_beyond_loopback_is_refused(falaj):
    falaj.ok("init")
    r = falaj("run", "--host", "0.0.0.0", "--port", str(find_free_port()),
              env={"FALAJ_TLS": "off"})  # fmt: skip
    assert r.exit_code == 2
    assert "refusing plain HTTP on 0.0.0.0" in r.stderr


def test_loopback_is_plain_by_default_and_tls_when_asked(home):
    base = {"home": str(home), "tls_cert": "", "tls_key": ""}
    assert not tls.plan(base | {"host": "127.0.0.1", "tls": "auto"}).enabled
    assert not tls.plan(base | {"host": "::1", "tls": "auto"}).enabled
    on = tls.plan(base | {"host": "127.0.0.1", "tls": "on"})
    assert on.enabled and on.generated and on.cert == home / "tls" / "cert.pem"
    assert tls.plan(base | {"host": "10.1.2.3", "tls": "auto"}).enabled
    assert tls.is_loopback("localhost") and not tls.is_loopback("0.0.0.0")
    assert not tls.is_loopback("box.example")


def test_configured_certificate_is_used_and_half_a_pair_refused(tmp_path, home):
    cert, key = tls.ensure_self_signed(tmp_path / "own", "127.0.0.1")
    base = {"home": str(home), "host": "0.0.0.0", "tls": "auto"}
    p = tls.plan(base | {"tls_cert": str(cert), "tls_key": str(key)})
    assert p.enabled and p.cert == cert and not p.generated
    assert not (home / "tls").exists()  # nothing generated when a certificate is given
    with pytest.raises(BadInput, match="go together"):
        tls.plan(base | {"tls_cert": str(cert), "tls_key": ""})
    with pytest.raises(BadInput, match="tls_cert: .* is not a readable file"):
        tls.plan(base | {"tls_cert": str(tmp_path / "nope.pem"), "tls_key": str(key)})
    # a key that does not belong to the certificate: named, its contents never shown
    other_cert, other_key = tls.ensure_self_signed(tmp_path / "other", "127.0.0.1")
    with pytest.raises(BadInput, match="do not load together") as exc:
        tls.server_context(cert, other_key)
    assert "PRIVATE" not in str(exc.value) and str(other_key) not in str(exc.value)


def test_a_generated_certificate_is_kept_while_it_covers_the_host(tmp_path):
    cert, _ = tls.ensure_self_signed(tmp_path, "127.0.0.1")
    first = cert.read_bytes()
    tls.ensure_self_signed(tmp_path, "127.0.0.1")
    assert cert.read_bytes() == first
    tls.ensure_self_signed(tmp_path, "192.0.2.7")  # another address: a new certificate
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.7") in san.get_values_for_type(x509.IPAddress)


def test_headers_on_loopback_http_have_no_hsts(client):
    r = client.get("/healthz")
    for name, value in HEADERS.items():
        assert r.headers[name] == value
    assert "Strict-Transport-Security" not in r.headers
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")


def test_grpc_uses_the_same_certificate(server):
    import grpc

    # Triton's generated messages (the same protocol): Falaj's share their names, so both
    # cannot load in one process, and test_triton loads Triton's
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    target = f"localhost:{server.grpc_port}"
    stub = pb_grpc.GRPCInferenceServiceStub
    creds = grpc.ssl_channel_credentials((server.home / "tls" / "cert.pem").read_bytes())
    with grpc.secure_channel(target, creds) as channel, pytest.raises(grpc.RpcError) as got:
        stub(channel).ServerLive(pb.ServerLiveRequest(), timeout=20)
    # the service itself answered over TLS (it wants a token): the channel is sound
    assert got.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as got:
        stub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert got.value.code() == grpc.StatusCode.UNAVAILABLE  # no plaintext gRPC


def test_a_client_that_stalls_its_handshake_holds_up_no_one(server):
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.3)  # accepted, and silent: no ClientHello
        ctx = server.context()
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=3)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200  # within 3 s, not after the stalled ones
        conn.close()
    finally:
        for s in stalled:
            s.close()
