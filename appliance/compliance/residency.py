"""Residency: personal data stays on the box and its LAN.

One rule, ``allowed(address)``: an address is allowed when it lies in one of the
networks of the ``allowed_networks`` setting (default: loopback, RFC 1918, link-local
and IPv6 unique-local). Two places use it:

- ``install(networks)`` adds a ``sys.addaudithook`` hook on the ``socket.connect``
  event, so this process refuses any outbound connection elsewhere with a
  ``PermissionError`` naming the address, before the system call. ``Appliance`` installs
  it when it opens (the CLI, ``falaj run``, the scheduler all open one).
- ``check_sink(host, what)`` refuses, at configuration time, a sink (an alert webhook,
  an export target) that resolves outside the allowed networks. Sinks are also refused
  on link-local addresses (169.254/16 is where cloud metadata services answer): a sink is
  a host on the LAN, configured by name or routable address.

An audit hook cannot be removed; installing again only changes the networks it allows.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from typing import Any

from appliance.errors import BadInput

DEFAULT_NETWORKS = ("127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,"
                    "169.254.0.0/16,fe80::/10,fc00::/7")  # fmt: skip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_state: dict[str, Any] = {"networks": None, "installed": False}
_guard = threading.local()  # set while the hook resolves a host name itself


def parse_networks(text: str | list[str] | tuple[str, ...], where: str = "allowed_networks"
                   ) -> tuple[Network, ...]:  # fmt: skip
    """Networks from "10.0.0.0/8, ::1/128" (or a list); a bad one names itself."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise BadInput(f"{where}: {item!r} is not a network (like 192.168.0.0/16)") from None
    if not out:
        raise BadInput(f"{where}: no network given (the default is {DEFAULT_NETWORKS})")
    return tuple(out)


def _ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def allowed(address: Address | str, networks: tuple[Network, ...] | None = None) -> bool:
    """Whether an address lies in the allowed networks (the installed ones by default)."""
    ip = _ip(address) if isinstance(address, str) else address
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    nets = networks or _state["networks"] or parse_networks(DEFAULT_NETWORKS)
    return any(ip.version == n.version and ip in n for n in nets)


def resolve(host: str, port: int = 0) -> list[Address]:
    """The addresses of a host (an address gives itself)."""
    ip = _ip(host)
    if ip is not None:
        return [ip]
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [a for a in (_ip(str(i[4][0])) for i in infos) if a is not None]


def check_sink(host: str, what: str, port: int = 0,
               networks: tuple[Network, ...] | None = None) -> list[Address]:  # fmt: skip
    """Refuse a sink (``what`` names it in the error) outside the allowed networks or on
    a link-local address; its addresses."""
    try:
        addresses = resolve(host, port)
    except OSError:
        raise BadInput(f"{what}: host {host!r} does not resolve here; give a loopback or "
                       "LAN address") from None  # fmt: skip
    bad = [a for a in addresses if not allowed(a, networks) or a.is_link_local]
    if bad or not addresses:
        first = str(bad[0]) if bad else host
        said = host if first == host else f"{host} is {first}, which"
        raise BadInput(f"{what}: {said} is a public address; data leaves this box only for "
                       "loopback or private LAN addresses (10/8, 172.16/12, 192.168/16, "
                       "127/8, fc00::/7; setting allowed_networks)")  # fmt: skip
    return addresses


class ResidencyError(PermissionError):
    """An outbound connection outside the allowed networks."""


def _hook(event: str, args: tuple) -> None:
    if event != "socket.connect" or getattr(_guard, "busy", False):
        return
    sock, address = args
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # AF_UNIX and others stay on the box
    host = str(address[0])
    ip = _ip(host)
    if ip is None:
        if host == "localhost":
            return
        _guard.busy = True
        try:
            ips = resolve(host, int(address[1]) if len(address) > 1 else 0)
        except OSError:
            ips = []
        finally:
            _guard.busy = False
        if ips and all(allowed(a) for a in ips):
            return
    elif allowed(ip):
        return
    port = address[1] if len(address) > 1 else "?"
    raise ResidencyError(
        f"residency: outbound connection to {host}:{port} refused: the appliance connects "
        "only to loopback and allowed LAN networks (setting allowed_networks)"
    )


def install(networks: str | tuple[Network, ...] = DEFAULT_NETWORKS) -> tuple[Network, ...]:
    """Refuse outbound connections outside ``networks`` in this process from now on."""
    nets = parse_networks(networks) if isinstance(networks, str | list) else networks
    _state["networks"] = nets
    if not _state["installed"]:
        sys.addaudithook(_hook)
        _state["installed"] = True
    return nets


def installed() -> tuple[Network, ...] | None:
    return _state["networks"] if _state["installed"] else None
