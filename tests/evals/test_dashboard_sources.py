"""The dashboard lists the sources verdicts are sent back to: one being deleted is gone."""

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import Integration

pytestmark = pytest.mark.django_db


def test_an_integration_being_deleted_is_not_listed_as_a_score_destination(login, owner, workspace):
    for name, deleting in (("kept-lf", None), ("leaving-lf", timezone.now())):
        Integration.objects.create(
            workspace=workspace,
            name=name,
            host="http://127.0.0.1:9",
            public_key="pk",
            secret_key="s",
            deletion_requested_at=deleting,
        )

    page = login(owner).get(reverse("evals:dashboard", args=[workspace.slug]))

    assert page.status_code == 200
    assert "kept-lf" in page.content.decode()
    # Its page 404s and its scores are no longer sent: listing it would be a dead link.
    assert "leaving-lf" not in page.content.decode()
