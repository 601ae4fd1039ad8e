"""TLS for `falaj run`: when it is on, the certificate it uses, and the server context.

`falaj run` serves HTTPS whenever it listens beyond loopback (plain HTTP is refused
there) and on loopback when asked (``--tls`` or the ``tls`` setting ``on``). The
certificate and key come from the ``tls_cert`` / ``tls_key`` settings, or else from
``HOME/tls/``, where a self-signed one (ECDSA P-256, its SAN the host name, ``localhost``
and the bound and loopback addresses) is made the first time it is needed, the key with
mode 0600. Only TLS 1.2 and 1.3 are spoken; TLS 1.2 only with forward-secret AEAD suites.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.errors import BadInput
from appliance.files import publish

MODES = ("auto", "on", "off")
# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305;
# TLS 1.3's suites are all of that kind and are not affected by this string.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
CERT_DAYS = 825  # the longest validity browsers accept for a server certificate
GENERATED_DIR = "tls"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class Plan:
    """Whether to serve TLS, and with which files (``generated``: made by Falaj)."""

    enabled: bool
    cert: Path | None = None
    key: Path | None = None
    generated: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.enabled else "http"


def plan(settings: dict[str, Any]) -> Plan:
    """Decide from the settings whether `falaj run` serves TLS; refuse plain HTTP beyond
    loopback (``BadInput``: exit 2). Makes the self-signed certificate if it is needed."""
    mode, host = settings["tls"], settings["host"]
    if mode not in MODES:
        raise BadInput(f"tls: must be one of {', '.join(MODES)}, got {mode!r}")
    cert, key = settings["tls_cert"], settings["tls_key"]
    if bool(cert) != bool(key):
        raise BadInput("tls_cert and tls_key go together: give both files or neither")
    local = is_loopback(host)
    if mode == "off" and not local:
        raise BadInput(
            f"refusing plain HTTP on {host}: beyond loopback falaj run serves only HTTPS; "
            "leave tls at auto (a self-signed certificate is made under the home) or give "
            "tls_cert and tls_key, or listen on 127.0.0.1"
        )
    if mode == "off" or (mode == "auto" and local):
        return Plan(False)
    home = Path(settings["home"])
    if cert:
        for what, path in (("tls_cert", cert), ("tls_key", key)):
            if not Path(path).is_file():
                raise BadInput(f"{what}: {path} is not a readable file")
        return Plan(True, Path(cert), Path(key))
    cert_path, key_path = ensure_self_signed(home, host)
    return Plan(True, cert_path, key_path, generated=True)


def _names(host: str) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The DNS names and addresses a generated certificate covers for ``host``."""
    dns = ["localhost", socket.gethostname()]
    ips: list[Any] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host:
            dns.append(host)
    else:
        if ip.is_unspecified:  # 0.0.0.0 / ::: every address of this machine
            ips += _local_addresses()
        else:
            ips.append(ip)
    fqdn = socket.getfqdn()
    if fqdn and "." in fqdn:
        dns.append(fqdn)
    return list(dict.fromkeys(d for d in dns if d)), list(dict.fromkeys(ips))


def _local_addresses() -> list[Any]:
    found = []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    for info in infos:
        try:
            found.append(ipaddress.ip_address(info[4][0].split("%")[0]))
        except ValueError:
            continue
    return found


def _covers(cert: x509.Certificate, host: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns, ips = _names(host)
    return set(dns) <= set(san.get_values_for_type(x509.DNSName)) and set(ips) <= set(
        san.get_values_for_type(x509.IPAddress)
    )


def ensure_self_signed(home: Path, host: str) -> tuple[Path, Path]:
    """``HOME/tls/cert.pem`` and ``key.pem`` covering ``host``: kept while they cover it
    and are valid for another 30 days, else made anew (the key 0600, written atomically)."""
    folder = home / GENERATED_DIR
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)
            if fresh and _covers(cert, host):
                return cert_path, key_path
        except ValueError:
            pass  # unreadable: make a new one
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _names(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[1] if len(dns) > 1 else dns[0]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Falaj appliance")])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([*map(x509.DNSName, dns), *map(x509.IPAddress, ips)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    publish(key_path, key_pem)
    publish(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side: TLS 1.2 minimum, forward-secret AEAD suites, no compression, no
    renegotiation. A key or certificate that does not load is ``BadInput`` naming the
    setting, never the file's contents."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "does not load"
        raise BadInput(
            f"tls_cert/tls_key: the certificate and key do not load together ({why})"
        ) from None
    return ctx


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate (DER), as browsers show it."""
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    return c.fingerprint(hashes.SHA256()).hex(":").upper()
