"""The integration keeps its own score delivery state; evals only report outcomes to it."""

from datetime import UTC, datetime

import pytest

from integrations import services
from integrations.adapters.base import ScoreIn
from integrations.models import Integration

pytestmark = pytest.mark.django_db


def _score(n: int) -> ScoreIn:
    return ScoreIn(
        id=f"score-{n}",
        trace_id=f"trace-{n}",
        name="iofold: helpful",
        value=True,
        comment="",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_clean_delivery_clears_earlier_failures(workspace, fake_langfuse, make_integration):
    integration = make_integration(fake_langfuse())

    services.record_score_delivery(integration=integration, delivered=1, failed=2, error="down")
    integration.refresh_from_db()
    assert (integration.scores_pushed_count, integration.score_push_failures) == (1, 2)
    assert integration.score_push_error == "down"

    services.record_score_delivery(integration=integration, delivered=3, failed=0)
    integration = Integration.objects.get(pk=integration.pk)
    assert (integration.scores_pushed_count, integration.score_push_failures) == (4, 0)
    assert integration.score_push_error == ""
    assert integration.scores_pushed_at is not None


def test_refused_scores_are_pinned_one_by_one(workspace, fake_langfuse, make_integration):
    fake = fake_langfuse()
    integration = make_integration(fake)
    fake.reject_score_ids["score-1"] = "Invalid score: no"

    delivery = services.deliver_scores(integration=integration, scores=[_score(0), _score(1)])

    assert delivery.delivered == [0]
    assert delivery.failed == {1: f"{services.SCORE_REJECTED_PREFIX}Invalid score: no"}
