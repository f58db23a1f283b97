"""Clicking "Create workspace" twice makes one workspace: the second submit leads to it."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from tests.factories import UserFactory
from workspaces.models import Workspace
from workspaces.services import DUPLICATE_CREATE_WINDOW, create_workspace_once


@pytest.mark.django_db
def test_a_second_submit_of_the_same_name_leads_to_the_workspace_just_made(client, owner):
    client.force_login(owner)

    first = client.post(reverse("workspaces:list"), {"name": "Support bot"})
    second = client.post(reverse("workspaces:list"), {"name": " Support bot "})

    workspace = Workspace.objects.get(name="Support bot")
    assert first.url == second.url == workspace.get_absolute_url()


@pytest.mark.django_db
def test_the_same_name_later_or_by_someone_else_is_a_new_workspace(owner):
    first = create_workspace_once(name="Support bot", owner=owner)
    Workspace.objects.filter(pk=first.pk).update(
        created_at=timezone.now() - DUPLICATE_CREATE_WINDOW - timedelta(seconds=1)
    )

    later = create_workspace_once(name="Support bot", owner=owner)
    by_another = create_workspace_once(name="Support bot", owner=UserFactory())

    assert len({first.pk, later.pk, by_another.pk}) == 3


@pytest.mark.django_db(transaction=True)
def test_two_submits_at_once_make_one_workspace(owner):
    barrier = threading.Barrier(2)
    made, failures = [], []

    def submit():
        try:
            barrier.wait(10)
            made.append(create_workspace_once(name="Support bot", owner=owner).pk)
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not failures
    assert len(set(made)) == 1
    assert Workspace.objects.filter(name="Support bot").count() == 1
