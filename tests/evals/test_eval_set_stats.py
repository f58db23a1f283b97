"""The figures the evals app gives the traces app's eval set pages, drift included."""

import pytest

from evals.set_stats import eval_set_stats
from tests.evals.test_continuous import _constructed
from traces.selectors import eval_stats

pytestmark = pytest.mark.django_db


def test_a_drifting_active_eval_gives_its_set_a_warning(workspace, settings):
    settings.IOFOLD_DRIFT_MARGIN = 0.10
    drifting = _constructed(workspace, agree_by_day=[(9, 1), (8, 2), (5, 5)], baseline=0.9)
    steady = _constructed(workspace, agree_by_day=[(9, 1), (9, 1)], baseline=0.9)

    stats = eval_stats([drifting.eval_set_id, steady.eval_set_id])

    warning = stats[drifting.eval_set_id]["drift"]
    assert warning.startswith(f"The active eval v{drifting.version} agrees with 73%")
    assert "17% below its 90% at activation" in warning
    assert stats[steady.eval_set_id]["drift"] is None
    assert stats[steady.eval_set_id]["eval_count"] == 1


def test_sets_without_an_active_eval_have_no_drift(workspace, django_assert_max_num_queries):
    from evals.models import Eval

    eval = _constructed(workspace, agree_by_day=[(1, 9), (1, 9)], baseline=0.9)
    Eval.objects.filter(pk=eval.pk).update(status="draft")

    with django_assert_max_num_queries(2):
        stats = eval_set_stats([eval.eval_set_id])

    assert stats[eval.eval_set_id]["drift"] is None


def test_the_eval_set_page_shows_the_drift_warning(workspace, owner, client, settings):
    from django.urls import reverse

    settings.IOFOLD_DRIFT_MARGIN = 0.10
    drifting = _constructed(workspace, agree_by_day=[(9, 1), (8, 2), (5, 5)], baseline=0.9)
    client.force_login(owner)

    response = client.get(
        reverse(
            "traces:evalset_detail", kwargs={"slug": workspace.slug, "pk": drifting.eval_set_id}
        )
    )

    assert response.status_code == 200
    assert 'data-testid="drift"' in response.content.decode()
    assert "17% below its 90% at activation" in response.content.decode()


def test_eval_set_pages_write_an_agreement_as_the_eval_page_does(workspace, owner, client):
    from django.urls import reverse

    from tests.evals.builders import labelled_set, make_eval

    eval_set, _ = labelled_set(workspace)
    eval = make_eval(eval_set, version=1, agreement=0.875, labels_tested=6)
    client.force_login(owner)

    pages = {
        name: client.get(reverse(name, kwargs=kwargs)).content.decode()
        for name, kwargs in [
            ("evals:detail", {"slug": workspace.slug, "pk": eval.pk}),
            ("traces:evalset_detail", {"slug": workspace.slug, "pk": eval_set.pk}),
            ("traces:evalset_list", {"slug": workspace.slug}),
        ]
    }

    for name, page in pages.items():
        assert "88%" in page, name
        assert "88 %" not in page, name
