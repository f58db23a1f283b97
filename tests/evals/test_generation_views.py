"""Generation pages and API: start, poll, result; provider settings never show the key."""

import pytest
from django.urls import reverse

from evals.generation.worker import run_generation
from evals.models import Eval, Generation, ProviderSettings
from tests.evals.builders import labelled_set

pytestmark = pytest.mark.django_db

KEY = "sk-live-very-secret-9876"


def test_generate_button_starts_a_generation_and_the_page_polls_until_done(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    eval_set, _ = labelled_set(workspace, good=4, bad=4, user=owner)
    client.force_login(owner)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("evals:generate", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
        )
    generation = Generation.objects.get(eval_set=eval_set)
    assert len(callbacks) == 1  # the task is enqueued after commit
    url = reverse("evals:generation", kwargs={"slug": workspace.slug, "pk": generation.pk})
    assert response.status_code == 302 and response.url == url

    page = client.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in page and 'data-status="queued"' in page

    run_generation(generation_id=generation.pk)
    fragment = client.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 286  # htmx stops polling
    html = fragment.content.decode()
    assert "every 2s" not in html
    assert 'data-testid="generation-result"' in html
    assert "def</span> <span" in html or "eval_fn" in html  # highlighted code
    assert 'data-testid="metrics-heldout-confusion"' in html
    assert "no tokens, no cost" in html


def test_failed_generation_shows_its_error(client, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=1, bad=1, user=owner)
    generation = Generation.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        provider="openai",
        status="failed",
        error="openai: HTTP 401: Incorrect API key",
    )
    client.force_login(owner)
    url = reverse("evals:generation", kwargs={"slug": workspace.slug, "pk": generation.pk})
    html = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "Generation failed" in html and "HTTP 401: Incorrect API key" in html


def test_low_confidence_warning_is_shown(client, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=1, bad=1, user=owner)
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(trace):\n    return True, 'ok'\n",
        provider="offline",
        agreement=0.5,
        low_confidence=True,
        low_confidence_reason="Agrees with 1 of 2 labels (50%) on training labels",
        metrics={"training": None, "heldout": None},
    )
    generation = Generation.objects.create(
        workspace=workspace, eval_set=eval_set, provider="offline", status="succeeded", result=eval
    )
    client.force_login(owner)
    html = client.get(
        reverse("evals:generation", kwargs={"slug": workspace.slug, "pk": generation.pk})
    ).content.decode()
    assert "Low confidence: Agrees with 1 of 2 labels (50%)" in html


def test_generate_without_labels_explains_why(client, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=0, bad=0, user=owner)
    client.force_login(owner)
    response = client.post(
        reverse("evals:generate", kwargs={"slug": workspace.slug, "pk": eval_set.pk}), follow=True
    )
    assert "Label some traces" in response.content.decode()
    assert not Generation.objects.exists()


def test_provider_settings_store_the_key_encrypted_and_show_only_its_last_four(
    client, workspace, owner
):
    client.force_login(owner)
    url = reverse("evals:settings", kwargs={"slug": workspace.slug})
    response = client.post(
        url, {"provider": "openai", "model": "gpt-4.1-mini", "base_url": "", "api_key": KEY}
    )
    assert response.status_code == 302
    row = ProviderSettings.objects.get(workspace=workspace)
    assert row.api_key == KEY
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM evals_providersettings WHERE id = %s", [row.pk])
        assert KEY not in cursor.fetchone()[0]
    html = client.get(url).content.decode()
    assert KEY not in html and "••••9876" in html
    # Saving without a key keeps it; the checkbox removes it.
    client.post(url, {"provider": "openai", "model": "gpt-4.1"})
    assert ProviderSettings.objects.get(workspace=workspace).api_key == KEY
    client.post(url, {"provider": "offline", "clear_key": "on"})
    assert ProviderSettings.objects.get(workspace=workspace).api_key == ""


def test_member_cannot_open_provider_settings(client, workspace, owner, member):
    client.force_login(member)
    assert client.get(reverse("evals:settings", kwargs={"slug": workspace.slug})).status_code == 403


def test_api_start_poll_read(api_client, workspace, owner, django_capture_on_commit_callbacks):
    eval_set, traces = labelled_set(workspace, good=3, bad=3, user=owner)
    ProviderSettings.objects.create(workspace=workspace, provider="offline", api_key=KEY)
    api_client.force_login(owner)
    headers = {"X-Workspace": workspace.slug}

    with django_capture_on_commit_callbacks():
        started = api_client.post(
            reverse("api-eval-set-generate", kwargs={"pk": eval_set.pk}), headers=headers
        )
    assert started.status_code == 202
    assert started.json()["status"] == "queued"
    run_generation(generation_id=started.json()["id"])

    polled = api_client.get(
        reverse("api-generation", kwargs={"pk": started.json()["id"]}), headers=headers
    ).json()
    assert polled["status"] == "succeeded" and polled["result"]

    listed = api_client.get(reverse("api-evals"), {"eval_set": eval_set.pk}, headers=headers)
    assert [e["id"] for e in listed.json()["results"]] == [polled["result"]]
    detail = api_client.get(reverse("api-eval", kwargs={"pk": polled["result"]}), headers=headers)
    body = detail.json()
    assert "def eval_fn" in body["code"] and body["metrics"]["training"]["labelled"] == 6
    assert KEY not in detail.content.decode()
    executions = api_client.get(
        reverse("api-eval-executions", kwargs={"pk": polled["result"]}),
        {"passed": "false"},
        headers=headers,
    ).json()
    assert executions["count"] == 3
    assert all(e["passed"] is False for e in executions["results"])


def test_api_start_without_labels_is_a_400(api_client, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=0, bad=0, user=owner)
    api_client.force_login(owner)
    response = api_client.post(
        reverse("api-eval-set-generate", kwargs={"pk": eval_set.pk}),
        headers={"X-Workspace": workspace.slug},
    )
    assert response.status_code == 400 and "Label some traces" in response.json()["detail"]


def test_no_reliable_eval_explains_why_and_the_list_shows_kappa(client, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=3, bad=1, user=owner)
    heldout = {"labelled": 4, "kappa": 0.0, "balanced_accuracy": 0.5, "accuracy": 0.75}
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(trace):\n    return True, 'No reliable rule yet'\n",
        provider="offline",
        agreement=0.75,
        low_confidence=True,
        low_confidence_reason="No reliable eval yet: no rule beat the majority verdict",
        metrics={"training": heldout, "heldout": heldout, "no_reliable_eval": True},
    )
    client.force_login(owner)
    detail = client.get(
        reverse("evals:detail", kwargs={"slug": workspace.slug, "pk": eval.pk})
    ).content.decode()
    assert 'data-testid="no-reliable-eval"' in detail
    assert "never activated automatically" in detail
    assert "label more traces of the rarer verdict" in detail
    assert 'data-testid="kappa">0.00<' in detail
    assert 'data-testid="balanced-accuracy">50%<' in detail
    listing = client.get(reverse("evals:list", kwargs={"slug": workspace.slug})).content.decode()
    assert "no reliable eval yet" in listing
    assert '<td class="num" data-metric="kappa">0.00</td>' in listing


def test_the_eval_list_reads_kappa_without_a_query_per_row(
    client, workspace, owner, django_assert_max_num_queries
):
    eval_set, _ = labelled_set(workspace, good=2, bad=2, user=owner)
    for version in range(1, 6):
        Eval.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            version=version,
            code="def eval_fn(trace):\n    return True, 'ok'\n",
            provider="offline",
            metrics={"training": {"labelled": 4, "kappa": version / 10}, "heldout": None},
        )
    client.force_login(owner)
    url = reverse("evals:list", kwargs={"slug": workspace.slug})
    client.get(url)  # warm per-session queries
    with django_assert_max_num_queries(8):
        html = client.get(url).content.decode()
    assert '<td class="num" data-metric="kappa">0.50</td>' in html
    assert '<td class="num" data-metric="kappa">0.10</td>' in html


def test_generate_with_good_labels_only_is_refused_with_the_counts_page_and_api(
    client, api_client, workspace, owner
):
    eval_set, _ = labelled_set(workspace, good=4, bad=0, user=owner)
    client.force_login(owner)
    page = client.post(
        reverse("evals:generate", kwargs={"slug": workspace.slug, "pk": eval_set.pk}), follow=True
    )
    assert "this set has 4 good and 0 bad" in page.content.decode()
    api_client.force_login(owner)
    response = api_client.post(
        reverse("api-eval-set-generate", kwargs={"pk": eval_set.pk}),
        headers={"X-Workspace": workspace.slug},
    )
    assert response.status_code == 400 and "4 good and 0 bad" in response.json()["detail"]
    assert not Generation.objects.exists()
