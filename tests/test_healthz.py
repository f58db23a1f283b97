"""/healthz: what a load balancer and an orchestrator probe."""

import pytest

from iofold.celery import app
from iofold.health import check_database


def test_healthz_is_ok_with_database_and_broker_up(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_healthz_needs_no_login(client, db):
    assert client.get("/healthz").status_code == 200


def test_healthz_is_503_when_the_broker_is_unreachable(client, db, monkeypatch):
    # Nothing listens on port 1: the connection is refused at once. Celery prefers the
    # CELERY_BROKER_URL environment variable over its configuration, so set both.
    unreachable = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CELERY_BROKER_URL", unreachable)
    monkeypatch.setitem(app.conf, "broker_url", unreachable)
    monkeypatch.setitem(app.conf, "broker_transport_options", {})
    # Settings name a transport only for the embedded broker; a Redis URL comes without one.
    monkeypatch.setitem(app.conf, "broker_transport", None)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["broker"] != "ok"


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_fails(client, monkeypatch):
    from iofold import views

    monkeypatch.setattr(views, "check_database", lambda: (False, "OperationalError"))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "OperationalError"


def test_healthz_only_answers_get(client, db):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_healthz_is_503_when_the_schema_is_gone(client):
    from django.db import connection

    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("ALTER TABLE django_migrations RENAME TO django_migrations_gone")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "schema missing"


def test_a_deleted_sqlite_file_is_not_a_healthy_database(db, tmp_path):
    """SQLite opens a missing file as a new, empty database; that is not "ok"."""
    from django.db.utils import ConnectionHandler

    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "gone.db")}}
    )
    try:
        assert check_database(handler["default"]) == (False, "schema missing")
    finally:
        handler.close_all()
