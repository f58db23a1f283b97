"""Outbound URLs: public addresses only in production, checked on save and on every connection.

No external DNS here (there is no network): literal addresses, ``localhost``, and a fake
resolver where a test needs a name to resolve somewhere else.
"""

import contextlib
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import httpx2
import pytest

from iofold.lib import outbound
from iofold.lib.outbound import OutboundURLRefused, check_url
from tests.test_settings import SETUP, _production_env, _run

TAIL = "iofold only connects to public addresses."
INVALID_HOST = "The URL's host name is not valid; check it for typing mistakes."


def refusal(url: str) -> str | None:
    try:
        check_url(url)
    except OutboundURLRefused as exc:
        return exc.message
    return None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5432", f"127.0.0.1 is a loopback address; {TAIL}"),
        ("http://127.0.0.1:6379/0", f"127.0.0.1 is a loopback address; {TAIL}"),
        ("http://10.0.0.5:3000", f"10.0.0.5 is a private address; {TAIL}"),
        ("https://172.16.4.2", f"172.16.4.2 is a private address; {TAIL}"),
        ("http://192.168.1.10/api", f"192.168.1.10 is a private address; {TAIL}"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://0.0.0.0:8000", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1", "240.0.0.1 is a reserved address"),
        ("http://100.64.0.1", "100.64.0.1 is a non-public address"),
        ("http://[::1]:6379", "::1 is a loopback address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fd00::5]/", "fd00::5 is a private address"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address"),
        ("http://[64:ff9b::a00:5]/", "64:ff9b::a00:5 is a private address"),  # NAT64 of 10.0.0.5
        # Missed by the ipaddress module (some versions or all): metadata and site-local.
        ("http://192.0.0.192/opc/v1/", f"192.0.0.192 is a non-public address; {TAIL}"),
        ("http://168.63.129.16/machine", "168.63.129.16 is a cloud platform address"),
        ("http://[fec0::1]/", "fec0::1 is a site-local address"),
        ("http://[3fff::1]/", "3fff::1 is a non-public address"),
        ("http://[::ffff:192.0.0.192]/", "::ffff:192.0.0.192 is a non-public address"),
        ("http://localhost:6379", f"localhost resolves to 127.0.0.1, a loopback address; {TAIL}"),
        ("http://0x7f000001/", "0x7f000001 resolves to 127.0.0.1, a loopback address"),
        # Public addresses pass.
        ("http://8.8.8.8", None),
        ("https://1.1.1.1:443/v1", None),
        ("http://[2001:4860:4860::8888]/", None),
        ("http://[::ffff:8.8.8.8]/", None),
        ("http://[64:ff9b::808:808]/", None),  # NAT64 of 8.8.8.8
    ],
)
def test_addresses_that_are_not_public_are_refused(production, url, expected):
    message = refusal(url)
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.startswith(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://8.8.8.8/", "Use an http:// or https:// URL."),
        ("file:///etc/passwd", "Use an http:// or https:// URL."),
        ("gopher://127.0.0.1:6379/_INFO", "Use an http:// or https:// URL."),
        ("http://admin:hunter2@8.8.8.8/", "Remove the user name and password"),
        ("http://admin@8.8.8.8/", "Remove the user name and password"),
        ("http:///nohost", "The URL has no host name."),
        ("http://8.8.8.8:99999/", "The URL's port is not a number"),
        ("http://999.999.999.999/", "The URL's host name is not valid"),
        ("http://[v1.x]/", "The URL's host name is not valid"),
    ],
)
def test_malformed_urls_are_refused_even_where_private_hosts_are_allowed(settings, url, expected):
    settings.IOFOLD_ALLOW_PRIVATE_HOSTS = True
    message = refusal(url)
    assert message is not None and message.startswith(expected)
    assert "hunter2" not in message


def test_private_hosts_allowed_lets_everything_through_without_a_lookup(settings, monkeypatch):
    settings.IOFOLD_ALLOW_PRIVATE_HOSTS = True
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
    assert refusal("http://127.0.0.1:5432") is None
    assert refusal("http://169.254.169.254/") is None
    assert refusal("http://langfuse:3000") is None


def test_the_allowlist_admits_ranges_and_names(production):
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["10.20.0.0/16", "LocalHost", "192.168.1.7"]
    assert refusal("http://10.20.3.4:3000") is None
    assert refusal("http://[::ffff:10.20.3.4]/") is None
    assert refusal("http://localhost:3000") is None
    assert refusal("http://192.168.1.7") is None
    # Only what is listed: a neighbouring range, or the address behind an allowed name.
    assert refusal("http://10.21.0.1").startswith("10.21.0.1 is a private address")
    assert refusal("http://192.168.1.8").startswith("192.168.1.8 is a private address")
    assert refusal("http://127.0.0.1").startswith("127.0.0.1 is a loopback address")


def test_a_name_that_does_not_resolve_is_left_to_the_connection(production, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
    assert refusal("https://langfuse.example.com") is None


def test_a_name_with_one_private_address_among_public_ones_is_refused(production, monkeypatch):
    mixed = _resolver({"mixed.example": ["8.8.8.8", "10.1.2.3"]})
    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    assert refusal("https://mixed.example") == (
        f"mixed.example resolves to 10.1.2.3, a private address; {TAIL}"
    )


# --- the connect-time guard ------------------------------------------------------------------

both_flavours = pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])


@both_flavours
def test_guarded_transport_connects_where_allowed(http, server):
    with http.Client(transport=outbound.guarded_transport(http)) as client:
        assert client.get(f"http://localhost:{server.port}/hello").text == "hello"
    assert server.connections == 1


@both_flavours
def test_guarded_transport_refuses_before_connecting(http, server, production):
    client = http.Client(transport=outbound.guarded_transport(http))
    with client, pytest.raises(http.ConnectError) as info:
        client.get(f"http://localhost:{server.port}/hello")
    refused = outbound.refusal_behind(info.value)
    assert refused is not None
    assert refused.message == f"localhost resolves to 127.0.0.1, a loopback address; {TAIL}"
    assert server.connections == 0


@both_flavours
def test_guarded_transport_checks_the_address_it_connects_to(http, server, production, monkeypatch):
    """A name that was public when saved and resolves to loopback now (DNS rebinding)."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            return _infos(next(answers), args[0] if args else 80)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://rebind.example:{server.port}/hello"
    check_url(url)  # saved: public at the time

    client = http.Client(transport=outbound.guarded_transport(http))
    with client, pytest.raises(http.ConnectError, match="rebind.example resolves to 127.0.0.1"):
        client.get(url)
    assert server.connections == 0


@both_flavours
def test_a_host_name_that_cannot_be_valid_is_a_refusal_not_a_crash(http, production):
    """An empty label or one over 63 characters: an IDNA error from the resolver, before."""
    assert refusal("http://langfuse..example.com/") == INVALID_HOST
    client = http.Client(transport=outbound.guarded_transport(http))
    with client, pytest.raises(http.ConnectError) as info:
        client.get(f"http://{'a' * 64}.example.com/")
    assert outbound.refusal_behind(info.value).message == INVALID_HOST


@both_flavours
def test_an_allowlisted_range_is_reached_at_the_checked_address_under_the_host_name(
    http, server, production, monkeypatch
):
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.0/8"]
    monkeypatch.setattr(
        socket, "getaddrinfo", _resolver({"langfuse.internal": ["127.0.0.2", "127.0.0.1"]})
    )
    url = f"http://langfuse.internal:{server.port}/hello"

    with http.Client(transport=outbound.guarded_transport(http)) as client:
        assert client.get(url).text == "hello"

    # Nothing listens on 127.0.0.2; the next checked address answered, and the request
    # kept the host name the URL gave.
    assert server.hosts == [f"langfuse.internal:{server.port}"]


@both_flavours
def test_tls_is_verified_for_the_host_name_not_the_address(
    http, tls_server, production, monkeypatch
):
    """The certificate names only langfuse.internal; connecting to 127.0.0.1 must still pass."""
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.0/8"]
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"langfuse.internal": ["127.0.0.1"]}))
    transport = outbound.guarded_transport(http, verify=tls_server.client_context)

    with http.Client(transport=transport) as client:
        response = client.get(f"https://langfuse.internal:{tls_server.port}/hello")

    assert response.text == "hello"
    assert tls_server.server_names == ["langfuse.internal"]  # the SNI the server received


@both_flavours
def test_the_guard_is_installed_in_the_transport_httpx_builds(http):
    """Fails when an httpx/httpcore upgrade moves the private attributes the guard uses."""
    transport = outbound.guarded_transport(http)
    assert type(transport._pool._network_backend).__name__ == "GuardedBackend"


# --- settings ----------------------------------------------------------------------------------


def test_private_hosts_are_allowed_in_development_and_refused_in_production(tmp_path):
    code = [
        "-c",
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.IOFOLD_ALLOW_PRIVATE_HOSTS, s.IOFOLD_PRIVATE_HOSTS_ALLOWLIST)",
    ]
    development = _run(code, {}, tmp_path)
    production = _run(code, _production_env(), tmp_path)
    on_premises = _run(
        code,
        {**_production_env(), "IOFOLD_PRIVATE_HOSTS_ALLOWLIST": "langfuse.internal, 10.0.0.0/8"},
        tmp_path,
    )
    assert development.stdout.strip() == "True []", development.stderr
    assert production.stdout.strip() == "False []", production.stderr
    assert on_premises.stdout.strip() == "False ['langfuse.internal', '10.0.0.0/8']"


def test_a_malformed_range_in_the_allowlist_stops_startup(tmp_path):
    result = _run(SETUP, {"IOFOLD_PRIVATE_HOSTS_ALLOWLIST": "10.0.0.0/33"}, tmp_path)
    assert result.returncode != 0
    assert "IOFOLD_PRIVATE_HOSTS_ALLOWLIST" in result.stderr


# --- helpers -----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.connections = 0
        self.hosts: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hosts.append(self.headers["Host"])
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(httpd):
    """Serve ``httpd`` on a thread for the duration of the block."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server():
    httpd = _Server()
    with serving(httpd):
        yield httpd


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server whose certificate is valid for langfuse.internal only."""
    cert, key = _self_signed("langfuse.internal", tmp_path)
    httpd = _Server()
    httpd.server_names = []
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server_context.sni_callback = lambda sock, name, ctx: httpd.server_names.append(name)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    httpd.client_context = ssl.create_default_context(cafile=str(cert))
    with serving(httpd):
        yield httpd


def _self_signed(name: str, folder) -> tuple:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _infos(addresses: list[str], port) -> list[tuple]:
    return [
        (
            socket.AF_INET6 if ":" in address else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            "",
            (address, int(port or 0)),
        )
        for address in addresses
    ]


def _resolver(names: dict[str, list[str]]):
    """Return a getaddrinfo that answers ``names`` itself and asks the real one otherwise."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return _infos(names[host], port)
        return real(host, port, *args, **kwargs)

    return getaddrinfo


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
