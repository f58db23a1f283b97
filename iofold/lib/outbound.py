"""Connections to URLs that workspaces configure: public addresses only, unless allowed.

A workspace chooses where iofold connects (a Langfuse host, an LLM provider's base URL).
Unchecked, it could point them at the cloud metadata service, the database or Redis and
read the replies back from error messages (server-side request forgery). Two layers:

- ``check_url`` when a URL is saved, for a clear error in the form or the API;
- ``guarded_transport`` when connecting: the host is resolved once, every address is
  checked, and the socket connects to a checked address. A name that resolved to a public
  address when it was saved and to an internal one now (DNS rebinding) is refused too.

``IOFOLD_ALLOW_PRIVATE_HOSTS`` (on in development) lets every address through;
``IOFOLD_PRIVATE_HOSTS_ALLOWLIST`` names hosts and CIDR ranges allowed even when private.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import socket
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The httpcore flavour under each httpx flavour: Langfuse's SDK uses httpx, the OpenAI and
# Anthropic SDKs use httpx2.
_CORE_OF = {"httpx": "httpcore", "httpx2": "httpcore2"}
# IPv6 addresses that stand for an IPv4 one reached through a translator (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Not public, though the ipaddress module calls them global: 192.0.0.0/24 before Python
# 3.12.4 (Oracle Cloud's legacy metadata service is 192.0.0.192), IPv6 site-local
# (deprecated, still routed inside some networks) and documentation (RFC 9637) in every
# version; and Azure's platform endpoint (WireServer), a public address only its VMs reach.
_NOT_PUBLIC = (
    (ipaddress.IPv4Network("192.0.0.0/24"), "a non-public address"),
    (ipaddress.IPv6Network("fec0::/10"), "a site-local address"),
    (ipaddress.IPv6Network("3fff::/20"), "a non-public address"),
    (ipaddress.IPv4Network("168.63.129.16/32"), "a cloud platform address"),
)


_INVALID_HOST = "The URL's host name is not valid; check it for typing mistakes."


class OutboundURLRefused(Exception):
    """iofold will not connect to this URL; ``message`` is safe to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_url(url: str) -> None:
    """Raise ``OutboundURLRefused`` unless iofold may connect to ``url``.

    Refused: schemes other than http and https, a user name or password in the URL, a host
    name or address that cannot be valid, and a host that resolves to any address that is
    not public, unless the settings allow it. A
    host that does not resolve passes: connecting to it fails on its own, and the
    connect-time guard checks whatever it resolves to by then.
    """
    try:
        parts = urlsplit((url or "").strip())
    except ValueError:  # an unclosed IPv6 bracket ("http://[::1")
        raise OutboundURLRefused("The URL cannot be read: its [brackets] do not pair up.") from None
    # The URL is not echoed back: it may carry a password.
    if parts.scheme not in ("http", "https"):
        raise OutboundURLRefused("Use an http:// or https:// URL.")
    if "@" in parts.netloc:
        raise OutboundURLRefused(
            "Remove the user name and password from the URL; iofold sends credentials "
            "only in the fields meant for them."
        )
    if not parts.hostname:
        raise OutboundURLRefused("The URL has no host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundURLRefused("The URL's port is not a number from 0 to 65535.") from None
    try:
        httpx.URL(url.strip())  # what the clients will make of it
    except httpx.InvalidURL:  # an address like 999.1.1.1 or [v1.x], a control character
        raise OutboundURLRefused(_INVALID_HOST) from None
    if _trusted(parts.hostname):
        return
    try:
        checked_addresses(parts.hostname, port)
    except OSError:
        return  # does not resolve (yet); see the docstring


def checked_addresses(host: str, port: int) -> list[str]:
    """Return the addresses ``host`` resolves to, all public or allowlisted.

    Raises ``OutboundURLRefused`` when one is neither, and ``OSError``
    (``socket.gaierror``) when the name does not resolve.
    """
    try:
        addresses = _resolve(host, port)
    except UnicodeError:  # an empty label ("a..b") or one over 63 characters
        raise OutboundURLRefused(_INVALID_HOST) from None
    _, networks = _allowlist()
    for text in addresses:
        ip = ipaddress.ip_address(text)
        kind = _non_public_kind(ip)
        if kind and not _in_networks(ip, networks):
            raise OutboundURLRefused(_refusal(host, text, kind))
    return addresses


def refusal_behind(exc: BaseException | None) -> OutboundURLRefused | None:
    """Return the refusal that caused ``exc`` somewhere down its chain, if one did.

    HTTP libraries and SDKs wrap the guard's refusal in their own connection errors.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OutboundURLRefused):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def guarded_transport(http: ModuleType = httpx, **options: Any) -> Any:
    """Return ``http.HTTPTransport(**options)`` whose every connection goes to an allowed address.

    ``http`` is the ``httpx`` module, or ``httpx2`` for the OpenAI and Anthropic SDKs. A
    refused connection raises the library's ``ConnectError`` caused by
    ``OutboundURLRefused`` (see ``refusal_behind``). A client given a transport ignores
    the HTTP(S)_PROXY variables, which would otherwise route around the guard; with
    ``IOFOLD_OUTBOUND_PROXY`` set, every connection goes to that proxy instead, and where
    it connects on is the proxy's to police (the operator chose it; it is not checked).
    """
    if "verify" not in options and "cert" not in options:
        options["verify"] = _default_ssl_context(http.__name__)
    if settings.IOFOLD_OUTBOUND_PROXY:
        return http.HTTPTransport(proxy=settings.IOFOLD_OUTBOUND_PROXY, **options)
    core = importlib.import_module(_CORE_OF[http.__name__])
    transport = http.HTTPTransport(**options)
    _use_network_backend(transport, _guarded_backend_class(core)(), core=core)
    return transport


@functools.cache
def _default_ssl_context(http_name: str) -> Any:
    """Return the library's default verifying SSL context, built once per process.

    Building one loads the CA bundle (50 to 90 ms, a sync's worth of pages at 1,000
    traces); a context is safe to share between clients and threads.
    """
    return importlib.import_module(http_name).create_ssl_context()


def _use_network_backend(transport: Any, backend: Any, *, core: ModuleType) -> None:
    """Make ``transport`` open its connections through ``backend``.

    httpx's HTTPTransport takes no network backend, though the httpcore pool it wraps does,
    so this swaps it in before any connection opens. It is the one place that touches
    private attributes (``_pool``, ``_network_backend``: the same in httpx 0.28 / httpcore
    1.0 and httpx2 / httpcore2 2.16); it raises rather than hand out an unguarded transport,
    and tests/lib/test_outbound.py fails if an upgrade renames them.
    """
    pool = getattr(transport, "_pool", None)
    if not isinstance(getattr(pool, "_network_backend", None), core.NetworkBackend):
        raise RuntimeError(
            f"{type(transport).__module__}.HTTPTransport no longer keeps its connection pool "
            "in _pool._network_backend; update iofold.lib.outbound for this version."
        )
    pool._network_backend = backend


@functools.cache
def _guarded_backend_class(core: ModuleType) -> type:
    class GuardedBackend(core.SyncBackend):
        """Resolve the host once, check every address, connect to a checked one.

        TLS still verifies and sends SNI for the URL's host name: httpcore passes the
        origin's host, not the address connected to, to ``start_tls``.
        """

        def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            if _trusted(host):
                return super().connect_tcp(host, port, *args, **kwargs)
            try:
                addresses = checked_addresses(host, port)
            except OutboundURLRefused as exc:
                raise core.ConnectError(exc.message) from exc
            except OSError as exc:
                raise core.ConnectError(str(exc)) from exc
            error: Exception = core.ConnectError(f"{host} has no address")
            # Each address in turn, as socket.create_connection does with a host name.
            for address in addresses:
                try:
                    return super().connect_tcp(address, port, *args, **kwargs)
                except (core.ConnectError, core.ConnectTimeout) as exc:
                    error = exc
            raise error

    return GuardedBackend


def _resolve(host: str, port: int) -> list[str]:
    """Return the IP addresses of ``host`` in resolver order, without repeats."""
    found: list[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in found:
            found.append(sockaddr[0])
    return found


def _trusted(host: str) -> bool:
    """Return whether every address of ``host`` is allowed without looking it up."""
    names, _ = _allowlist()
    return bool(settings.IOFOLD_ALLOW_PRIVATE_HOSTS) or _normal_host(host) in names


def _allowlist() -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    return _parse_allowlist(tuple(settings.IOFOLD_PRIVATE_HOSTS_ALLOWLIST))


@functools.lru_cache(maxsize=8)
def _parse_allowlist(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Split allowlist entries into host names and networks (a bare address is a /32 or /128)."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(_normal_host(entry))
    return frozenset(names), tuple(networks)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _judged(ip: IPAddress) -> list[IPAddress]:
    """Return the addresses that decide where a connection to ``ip`` really goes."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip in _NAT64:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
        if ip.sixtofour is not None:
            return [ip, ip.sixtofour]
    return [ip]


def _non_public_kind(ip: IPAddress) -> str | None:
    """Return what kind of non-public address ``ip`` is, or None when it is public."""
    for judged in _judged(ip):
        if judged.is_loopback:
            return "a loopback address"
        if judged.is_link_local:
            return "a link-local address"
        if judged.is_unspecified:
            return "an unspecified address"
        if judged.is_multicast:
            return "a multicast address"
        if judged.is_reserved:
            return "a reserved address"
        if judged.is_private:
            return "a private address"
        for network, kind in _NOT_PUBLIC:
            if judged in network:
                return kind
        if not judged.is_global:
            return "a non-public address"
    return None


def _in_networks(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(judged in network for judged in _judged(ip) for network in networks)


def _refusal(host: str, address: str, kind: str) -> str:
    tail = "iofold only connects to public addresses."
    if _normal_host(host) == address.lower():
        return f"{address} is {kind}; {tail}"
    return f"{host} resolves to {address}, {kind}; {tail}"
