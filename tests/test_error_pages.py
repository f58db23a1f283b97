"""A missing page or a server error shows iofold's own page, with a way back."""

from django.test import RequestFactory
from django.views.defaults import server_error

from tests.traces.factories import TraceFactory


def test_a_missing_trace_is_a_404_page_with_the_workspace_around_it(client, owner, workspace):
    client.force_login(owner)

    response = client.get(f"/w/{workspace.slug}/traces/999999/")

    page = response.content.decode()
    assert response.status_code == 404
    assert "Page not found" in page
    assert 'href="/"' in page and "Back to iofold" in page
    assert workspace.name in page  # the header and its workspace switcher are there


def test_another_workspaces_trace_looks_like_any_missing_page(client, owner, other_workspace):
    trace = TraceFactory(workspace=other_workspace)
    client.force_login(owner)

    response = client.get(f"/w/{other_workspace.slug}/traces/{trace.pk}/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_a_server_error_page_needs_no_request_context(db):
    response = server_error(RequestFactory().get("/"))

    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in page
    assert "Back to iofold" in page


def test_an_unknown_api_path_answers_in_json_like_every_api_error(client):
    for path in ("/api/v1/no-such-thing/", "/api/v1/evals/1/no-such-action"):
        response = client.get(path, HTTP_AUTHORIZATION="Bearer not-a-token")

        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": "Not found."}


def test_a_refused_page_says_why_with_the_workspace_around_it(client, viewer, workspace):
    """A viewer who follows a link to an admin's page learns why it is closed, and the way back."""
    client.force_login(viewer)

    response = client.get(f"/w/{workspace.slug}/settings/")

    page = response.content.decode()
    assert response.status_code == 403
    assert "Only owners and admins can do this. Your role here is Viewer." in page
    assert f'href="/w/{workspace.slug}/"' in page and f"Back to {workspace.name}" in page
    assert 'data-testid="workspace-switcher"' in page
