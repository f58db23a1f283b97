"""SSRF attacks on every client iofold points at a workspace's URL, in production mode.

Each attack aims at a local listener that records every TCP connection it accepts; a
refused request must fail with the guard's message and leave the listener untouched.
Only local addresses are used (the metadata and private ranges are refused before any
connection is tried, so nothing leaves the machine).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import httpx2
import pytest

from evals.generation.providers import get_provider
from evals.notifications import post_webhook
from integrations.adapters import get_adapter_class
from integrations.adapters.langfuse import transport as langfuse_transport
from iofold.lib import outbound
from tests.lib.test_outbound import serving

TAIL = "iofold only connects to public addresses"


@pytest.fixture(autouse=True)
def _stay_on_this_machine(monkeypatch):
    """Refuse, in this module, any socket connection off loopback: should the guard ever
    let a request through, the test fails here instead of sending it off the machine."""
    connect = socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            raise AssertionError(f"a test tried to connect to {host}, off this machine")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


class _Listener:
    """Accepts TCP connections on 127.0.0.1 (and ::1 where there is IPv6) and counts them."""

    def __init__(self) -> None:
        self.connections = 0
        self.sockets = []
        v4 = socket.create_server(("127.0.0.1", 0))
        self.port = v4.getsockname()[1]
        self.sockets.append(v4)
        with contextlib.suppress(OSError):  # no IPv6 here
            self.sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        for sock in self.sockets:
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class _Redirector(ThreadingHTTPServer):
    """An allowed server (127.0.0.2, allowlisted) that answers 302 to ``target``."""

    daemon_threads = True

    def __init__(self) -> None:
        self.target = ""
        self.hits = 0
        super().__init__(("127.0.0.2", 0), _RedirectHandler)


class _RedirectHandler(BaseHTTPRequestHandler):
    def _redirect(self):
        self.server.hits += 1
        self.send_response(302)
        self.send_header("Location", self.server.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _redirect

    def log_message(self, *args):
        pass


@pytest.fixture
def listener():
    server = _Listener()
    yield server
    server.close()


@pytest.fixture
def redirector():
    with serving(_Redirector()) as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def _fresh_langfuse_clients():
    langfuse_transport._clients.clear()
    yield
    langfuse_transport._clients.clear()


# --- the clients: each sends one request to ``url`` the way iofold does -------------------


def _raw(http):
    def send(url: str) -> str:
        with http.Client(transport=outbound.guarded_transport(http), follow_redirects=True) as c:
            return c.get(url).text

    return send


def _provider(name):
    def send(url: str) -> str:
        provider = get_provider(name, api_key="k", model="m", base_url=url, max_retries=0)
        return provider.complete(system="s", messages=[{"role": "user", "content": "hi"}])

    return send


def _adapter(kind, **credentials):
    def send(url: str):
        adapter = get_adapter_class(kind)(host=url, max_attempts=1, **credentials)
        return adapter.test_connection()

    return send


def _webhook(url: str):
    automation = SimpleNamespace(webhook_url=url, webhook_secret="s", workspace_id=1)
    outcome = post_webhook(automation=automation, event="refined", payload={})
    if outcome.startswith(("refused", "failed")):
        raise RuntimeError(outcome)
    return outcome


CLIENTS = {
    "httpx": _raw(httpx),
    "httpx2": _raw(httpx2),
    "openai-provider": _provider("openai"),
    "anthropic-provider": _provider("anthropic"),
    "openai-adapter": _adapter("openai", secret_key="k"),
    "langfuse-adapter": _adapter("langfuse", public_key="pk", secret_key="sk"),
    "langsmith-adapter": _adapter("langsmith", api_key="k", project="p"),
    "webhook": _webhook,
}
clients = pytest.mark.parametrize("send", list(CLIENTS.values()), ids=list(CLIENTS))


def _failure(send, url: str) -> str:
    """Send; return the error the caller sees (with its causes)."""
    with pytest.raises(Exception) as info:
        send(url)
    refusal = outbound.refusal_behind(info.value)
    return refusal.message if refusal else f"{type(info.value).__name__}: {info.value}"


LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "017700000001",
    "0.0.0.0",
    "0",
    "[::]",
    "127.0.1.3",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[0::1]",
    "0x7f.1",
    "localhost",
    "LOCALHOST",
    "runsc",  # /etc/hosts names
    "vm",
]


@clients
@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_in_any_spelling_is_refused_before_connecting(send, host, listener, production):
    message = _failure(send, f"http://{host}:{listener.port}/v1")
    assert TAIL in message
    assert listener.connections == 0


@clients
@pytest.mark.parametrize("host", ["127.000.000.001", "0177.0.0.1", "127.0.0.1.", "127%2E0%2E0%2E1"])
def test_spellings_the_clients_cannot_read_reach_nothing(send, host, listener, production):
    """httpx refuses the URL, or the name does not resolve: an error, and no connection."""
    with pytest.raises(Exception):  # noqa: B017
        send(f"http://{host}:{listener.port}/v1")
    assert listener.connections == 0


@clients
def test_a_trailing_dot_name_that_resolves_to_loopback_is_refused(
    send, listener, production, monkeypatch
):
    """``localhost.`` does not resolve in every sandbox; where it does, it is loopback."""
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == "localhost.":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port or 80)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    message = _failure(send, f"http://localhost.:{listener.port}/v1")
    assert "localhost. resolves to 127.0.0.1, a loopback address" in message
    assert listener.connections == 0


@clients
@pytest.mark.parametrize(
    "host", ["169.254.169.254", "[fd00:ec2::254]", "10.0.0.1", "172.16.0.1", "192.168.0.1"]
)
def test_metadata_and_private_ranges_are_refused_before_connecting(send, host, production):
    assert TAIL in _failure(send, f"http://{host}/latest/meta-data/")


@clients
@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/", "http://localhost:{port}/x"])
def test_a_redirect_from_an_allowed_server_to_loopback_is_refused(
    send, target, listener, redirector, production
):
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.2/32"]
    redirector.target = target.format(port=listener.port)
    try:
        send(f"http://127.0.0.2:{redirector.server_address[1]}/v1")
    except Exception as exc:  # refused, or the 302 reported as an error
        refusal = outbound.refusal_behind(exc)
        assert refusal is None or TAIL in refusal.message
    assert listener.connections == 0


@clients
def test_dns_rebinding_connects_only_to_the_checked_address(
    send, listener, production, monkeypatch
):
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]])
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            address = next(answers)[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 80)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example:{listener.port}/v1"
    outbound.check_url(url)  # public when saved
    assert "rebind.example resolves to 127.0.0.1" in _failure(send, url)
    assert listener.connections == 0


@clients
@pytest.mark.parametrize(
    "url",
    [
        "http://allowed@127.0.0.1:{port}/",
        "http://127.0.0.2:{rport}@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}#@127.0.0.2:{rport}/",
        "http://127.0.0.1:{port}\\@127.0.0.2:{rport}/",
        "http://127.0.0.2:{rport}\\@127.0.0.1:{port}/",
    ],
)
def test_userinfo_tricks_are_refused(send, url, listener, redirector, production):
    """Whichever host a parser picks, the address connected to is the one checked."""
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.2/32"]
    redirector.target = f"http://127.0.0.1:{listener.port}/"
    url = url.format(port=listener.port, rport=redirector.server_address[1])
    with pytest.raises(outbound.OutboundURLRefused):
        outbound.check_url(url)
    try:
        send(url)
    except Exception as exc:  # refused, or the redirector's 302 reported as an error
        refusal = outbound.refusal_behind(exc)
        assert refusal is None or TAIL in refusal.message
    assert listener.connections == 0


@clients
def test_proxy_variables_do_not_route_around_the_guard(
    send, listener, redirector, production, monkeypatch
):
    """An allowed server reached directly: the HTTP(S)_PROXY listener gets nothing."""
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.2/32"]
    proxy = f"http://127.0.0.1:{listener.port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    redirector.target = "http://203.0.113.9/"  # never followed far: TEST-NET, refused
    # The 302 may be reported as an error; what counts is where the request went.
    with contextlib.suppress(Exception):
        send(f"http://127.0.0.2:{redirector.server_address[1]}/v1")
    assert listener.connections == 0
    assert redirector.hits >= 1


@clients
@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1:{port}/", "gopher://127.0.0.1:{port}/_x"]
)
def test_other_schemes_are_refused(send, url, listener, production):
    url = url.format(port=listener.port)
    with pytest.raises(outbound.OutboundURLRefused, match="http:// or https://"):
        outbound.check_url(url)
    with pytest.raises(Exception):  # noqa: B017
        send(url)
    assert listener.connections == 0
