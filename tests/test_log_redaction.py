"""An invitation link's token never reaches a log: not Django's own lines (a 404 or 403
on the link), not the web server's access line (its path, query string or Referer)."""

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.db import connection
from pythonjsonlogger.json import JsonFormatter

from tests.factories import UserFactory
from workspaces import services
from workspaces.models import Invitation

pytestmark = pytest.mark.django_db

TOKEN = "inv-Secret_Token-4f1d2c9a7b"  # a link's token nobody issued (the 404 path)


@pytest.fixture
def console():
    """What the app's console handler (settings.LOGGING) writes, as text."""
    handler = logging.getHandlerByName("console")
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    yield handler, buffer
    handler.setStream(old)


def invite(workspace, owner, capture) -> str:
    """Invite someone and return the link's token, as read from the invitation email."""
    from django.core import mail

    with capture(execute=True):
        services.invite_member(
            workspace=workspace, email="new@example.test", role="member", invited_by=owner,
            base_url="http://testserver",
        )  # fmt: skip
    return mail.outbox[-1].body.split("/invitations/")[1].split("/")[0]


@pytest.mark.parametrize("formatter", ["plain", "json"])
def test_django_logs_an_invitation_link_without_its_token(
    client, console, workspace, owner, formatter, django_capture_on_commit_callbacks
):
    handler, buffer = console
    if formatter == "json":
        handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    token = invite(workspace, owner, django_capture_on_commit_callbacks)
    assert Invitation.objects.filter(workspace=workspace).exists()
    client.force_login(UserFactory())  # signed in, but not with the invited address: 403

    assert client.get(f"/invitations/{token}/").status_code == 403
    assert client.get(f"/invitations/{TOKEN}/").status_code == 404

    lines = buffer.getvalue()
    assert "Forbidden: /invitations/[redacted]/" in lines
    assert "Not Found: /invitations/[redacted]/" in lines
    assert token not in lines and TOKEN not in lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_the_access_log_has_no_invitation_token(tmp_path):
    port = _free_port()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        if connection.vendor == "postgresql"
        else f"sqlite:///{db['NAME']}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "1",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "iofold.wsgi:application",
             "--config", "python:iofold.gunicorn_conf"],
            cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        status = None
        for _ in range(600):  # until the server answers (it imports the app first)
            request = urllib.request.Request(
                f"{base}/invitations/{TOKEN}/?from=%2Finvitations%2F{TOKEN}%2F",
                headers={"Referer": f"{base}/invitations/{TOKEN}/"},
            )
            try:
                status = urllib.request.urlopen(request, timeout=5).status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
                continue
            break
        assert status == 404
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

    lines = log.read_text()
    assert (
        '"GET /invitations/[redacted]/?from=%2Finvitations%2F[redacted]%2F HTTP/1.1" 404' in lines
    )
    assert f'"{base}/invitations/[redacted]/"' in lines  # the Referer
    assert TOKEN not in lines, lines
