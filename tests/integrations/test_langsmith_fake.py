"""The fake LangSmith answers what the real SDK sends, in shapes the SDK's models accept."""

import uuid
from datetime import UTC, datetime, timedelta

import langsmith
import pytest
from langsmith._client import Langsmith
from langsmith.utils import LangSmithConflictError

from integrations.adapters.langsmith import SELECTS
from tests.fakes.langsmith_server import API_KEY, PROJECT_ID, FakeLangSmith


@pytest.fixture
def fake():
    server = FakeLangSmith(traces=7).start()
    yield server
    server.stop()


def test_the_v2_query_validates_against_the_sdks_models(fake):
    client = Langsmith(
        api_key=API_KEY, base_url=fake.url, max_retries=0, _strict_response_validation=True
    )
    page = client.runs.query_v2(
        project_ids=[PROJECT_ID],
        selects=SELECTS,
        min_start_time=datetime.now(UTC) - timedelta(days=3),
        page_size=5,
        is_root=True,
    )
    assert (len(page.items), page.next_cursor) == (5, "5")
    run = page.items[0]
    assert (run.run_type, run.status, run.is_root) == ("CHAIN", "SUCCESS", True)
    assert isinstance(run.start_time, datetime)
    only_ids = client.runs.query_v2(project_ids=[PROJECT_ID], page_size=1)
    assert set(only_ids.items[0].model_dump(exclude_none=True)) == {"id"}


@pytest.mark.parametrize(("size", "answered"), [(0, False), (1000, True), (1001, False)])
def test_the_v2_query_takes_pages_of_1_to_1000_runs(fake, size, answered):
    client = Langsmith(api_key=API_KEY, base_url=fake.url, max_retries=0)
    if answered:
        page = client.runs.query_v2(project_ids=[PROJECT_ID], page_size=size, is_root=True)
        assert (len(page.items), page.next_cursor) == (7, None)
    else:
        with pytest.raises(langsmith.BadRequestError):
            client.runs.query_v2(project_ids=[PROJECT_ID], page_size=size)


# The SDK deprecates list_runs for the v2 query; older servers have only the legacy one.
@pytest.mark.filterwarnings("ignore:list_runs\\(\\) is deprecated")
def test_the_sdks_legacy_query_and_feedback_work_against_it(fake):
    client = langsmith.Client(api_url=f"{fake.url}/api/v1", api_key=API_KEY)
    runs = list(client.list_runs(project_id=PROJECT_ID, is_root=True, limit=3))
    assert [r.run_type for r in runs] == ["chain"] * 3
    feedback = str(uuid.uuid4())
    client.create_feedback(
        run_id=runs[0].id, key="helpful", score=1, feedback_id=feedback, session_id=PROJECT_ID
    )
    assert fake.feedback[feedback]["key"] == "helpful"
    with pytest.raises(LangSmithConflictError):
        client.create_feedback(
            run_id=runs[0].id,
            key="helpful",
            score=1,
            feedback_id=feedback,
            session_id=PROJECT_ID,
            stop_after_attempt=1,
        )
