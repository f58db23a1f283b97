"""The Langfuse adapter against the fake Langfuse server, through the real SDK client."""

from __future__ import annotations

import email.utils
import gc
import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from integrations.adapters import get_adapter_class
from integrations.adapters.base import (
    AdapterError,
    ScoreIn,
    TraceFilters,
    parse_io,
    parse_time,
    validate_normalised_trace,
)
from integrations.adapters.langfuse import LangfuseAdapter, get_client, normalise_langfuse_export
from integrations.adapters.langfuse.normalise import normalise_rows
from integrations.adapters.langfuse.scan import Scan
from tests.fakes.langfuse_server import FakeLangfuse, make_row, running
from traces.ingest import canonical_trace

SECRET = "sk-lf-very-secret-value"


@pytest.fixture
def fake():
    # A distinct public key per server keeps the per-key client cache from crossing tests.
    with running(
        traces=30, observations=5, public_key=f"pk-lf-{uuid.uuid4().hex[:8]}", secret_key=SECRET
    ) as server:
        yield server


@pytest.fixture
def overlapping():
    """Traces one second apart, each lasting seconds, so their rows interleave in time."""
    with running(
        traces=30,
        observations=6,
        spacing=timedelta(seconds=1),
        public_key=f"pk-lf-{uuid.uuid4().hex[:8]}",
        secret_key=SECRET,
    ) as server:
        yield server


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_adapter(fake: FakeLangfuse, **kwargs) -> LangfuseAdapter:
    kwargs.setdefault("sleep", Sleeps())
    return LangfuseAdapter(
        host=fake.url, public_key=fake.public_key, secret_key=fake.secret_key, timeout=5, **kwargs
    )


def sync(
    adapter: LangfuseAdapter,
    fake: FakeLangfuse,
    *,
    since=None,
    filters=None,
    until=None,
    cursor=None,
):
    until = until or fake.trace_start(fake.n_traces) + timedelta(minutes=5)
    since = since or fake.trace_start(0) - timedelta(hours=1)
    filters = filters or TraceFilters()
    return list(adapter.fetch_traces(since=since, until=until, filters=filters, cursor=cursor))


def all_traces(pages) -> dict[str, dict]:
    traces = [t for page in pages for t in page.traces]
    ids = [t["id"] for t in traces]
    assert len(ids) == len(set(ids)), "a trace was yielded twice"
    return {t["id"]: t for t in traces}


def test_registry_imports_the_langfuse_adapter_lazily():
    assert get_adapter_class("langfuse") is LangfuseAdapter
    with pytest.raises(LookupError):
        get_adapter_class("nope")


def test_test_connection_returns_the_project(fake):
    info = make_adapter(fake).test_connection()
    assert (info.project_id, info.project_name, info.server_version) == (
        "proj-fake",
        "Fake Project",
        "4.59.0",
    )


def test_clients_are_cached_per_host_and_key(fake):
    a = get_client(host=fake.url, public_key=fake.public_key, secret_key=SECRET, timeout=5)
    b = make_adapter(fake).client
    assert a is b
    assert get_client(host=fake.url, public_key="pk-other", secret_key=SECRET, timeout=5) is not a


def test_interleaved_traces_come_back_complete_across_many_pages(overlapping):
    adapter = make_adapter(overlapping, page_limit=7)
    pages = sync(adapter, overlapping)
    traces = all_traces(pages)
    assert len(traces) == 30
    assert overlapping.request_count("/api/public/v2/observations") >= 30 * 6 // 7
    for index in range(30):
        trace = traces[overlapping.trace_id(index)]
        expected = {row["id"] for row in overlapping.trace_rows(trace["id"])}
        assert {step["id"] for step in trace["steps"]} == expected
    # Small pages and one big page give the same traces.
    big = all_traces(sync(make_adapter(overlapping), overlapping))
    assert big == traces


def test_the_page_that_ends_the_scan_carries_the_last_rows_traces(overlapping, fake):
    """One page per observations page read: the scan's last rows do not make a page alone."""
    pages = sync(make_adapter(overlapping, page_limit=12), overlapping)
    assert len(pages) == overlapping.request_count("/api/public/v2/observations")
    assert [p.cursor is None for p in pages] == [False] * (len(pages) - 1) + [True]
    assert pages[-1].traces and len(all_traces(pages)) == 30
    # A source whose rows fit one page: a sync of it writes one page, so commits once.
    (page,) = sync(make_adapter(fake), fake)
    assert page.cursor is None and len(page.traces) == 30


def test_the_next_page_is_asked_for_while_a_page_is_grouped_into_traces(overlapping, monkeypatch):
    """The server builds the next page while this one's rows are normalised, not after."""
    path = "/api/public/v2/observations"
    asked_while_grouping = []
    add_rows = Scan.add_rows

    def grouping(scan, rows, **kwargs):
        if not asked_while_grouping:
            deadline = time.monotonic() + 10
            while overlapping.request_count(path) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            asked_while_grouping.append(overlapping.request_count(path))
        return add_rows(scan, rows, **kwargs)

    monkeypatch.setattr(Scan, "add_rows", grouping)
    pages = sync(make_adapter(overlapping, page_limit=12), overlapping)
    assert asked_while_grouping[0] >= 2
    # Read ahead or not, the same traces, each once, and one request a page.
    assert len(all_traces(pages)) == 30 == sum(len(p.traces) for p in pages)
    assert len(pages) == overlapping.request_count(path)


def test_memory_stays_bounded_by_open_traces(overlapping):
    """Traces are yielded as the scan passes them, not all at the end."""
    pages = sync(make_adapter(overlapping, page_limit=12), overlapping)
    yielded_before_last = sum(len(p.traces) for p in pages[:-1])
    assert yielded_before_last >= 25


def test_pages_read_keep_no_reply_body_while_the_collector_is_paused(overlapping):
    """A sync pauses the cyclic collector; the replies it read must not pile up meanwhile."""
    adapter = make_adapter(overlapping, page_limit=12)
    gc.collect()
    gc.disable()
    try:
        traces = all_traces(sync(adapter, overlapping))
        # An httpx response refers to itself, so a dropped one lives on until a collection.
        bodies_held = sum(
            len(vars(o)["_content"])
            for o in gc.get_objects()
            # type(), not isinstance(): a dead weak proxy among the objects raises on the latter.
            if issubclass(type(o), httpx.Response) and "_content" in vars(o)
        )
    finally:
        gc.enable()
    assert len(traces) == 30
    assert bodies_held == 0


def test_normalisation_of_a_failing_agent_run(fake):
    traces = all_traces(sync(make_adapter(fake), fake))
    failing = [t for t in traces.values() if any(s["error"] for s in t["steps"])]
    assert failing, "the generator should produce some failing tool calls"
    trace = failing[0]
    rows = {row["id"]: row for row in fake.trace_rows(trace["id"])}
    root = next(r for r in rows.values() if r["parentObservationId"] is None)

    assert validate_normalised_trace(trace) == []
    assert trace["name"] == root["traceName"]
    assert trace["timestamp"] == root["startTime"]
    assert trace["input"] == {"question": trace["input"]["question"]}
    assert trace["tags"] == root["tags"] and trace["user_id"] == root["userId"]
    assert trace["session_id"] == root["sessionId"]
    assert trace["metadata"]["environment"] == root["environment"]
    assert trace["metadata"]["agent_version"] == "2.3"

    steps = {s["id"]: s for s in trace["steps"]}
    assert steps[root["id"]]["type"] == "agent" and steps[root["id"]]["parent_id"] is None
    assert {s["parent_id"] for s in trace["steps"] if s["id"] != root["id"]} == {root["id"]}
    types = {rows[i]["type"]: s["type"] for i, s in steps.items()}
    assert types == {
        "AGENT": "agent",
        "GENERATION": "llm",
        "TOOL": "tool",
        "RETRIEVER": "retriever",
    }

    tool = next(s for s in trace["steps"] if s["type"] == "tool")
    assert tool["error"] == rows[tool["id"]]["statusMessage"] and "TimeoutError" in tool["error"]
    llm = next(s for s in trace["steps"] if s["type"] == "llm")
    assert llm["model"] == "gpt-4o-mini"
    assert llm["usage"] == {
        "input": rows[llm["id"]]["usageDetails"]["input"],
        "output": rows[llm["id"]]["usageDetails"]["output"],
    }
    assert isinstance(llm["output"], dict)  # raw JSON strings are decoded
    assert tool["usage"] is None and tool["model"] is None

    assert trace["cost"] == pytest.approx(sum(r["totalCost"] for r in rows.values()))
    starts = [parse_time(r["startTime"]) for r in rows.values()]
    ends = [parse_time(r["endTime"]) for r in rows.values() if r["endTime"]]
    assert trace["latency_ms"] == pytest.approx((max(ends) - min(starts)).total_seconds() * 1000)


def test_statusmessage_error_without_error_level_counts_and_span_event_types(fake):
    start = fake.trace_start(3) + timedelta(seconds=20)
    tid = "t-status"
    fake.add_trace(
        [
            make_row(
                id="r",
                traceId=tid,
                type="CHAIN",
                name="pipeline",
                startTime=start.isoformat().replace("+00:00", "Z"),
                endTime=None,
                traceName="pipeline",
            ),
            make_row(
                id="s",
                traceId=tid,
                parentObservationId="r",
                type="SPAN",
                name="parse",
                startTime=(start + timedelta(seconds=1)).isoformat().replace("+00:00", "Z"),
                endTime=None,
                statusMessage="ValueError: bad JSON in tool output",
            ),
            make_row(
                id="e",
                traceId=tid,
                parentObservationId="s",
                type="EVENT",
                name="note",
                startTime=(start + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                endTime=None,
                level="WARNING",
                statusMessage="retrying after error",
            ),
        ]
    )
    trace = all_traces(sync(make_adapter(fake), fake))[tid]
    steps = {s["id"]: s for s in trace["steps"]}
    assert [steps[i]["type"] for i in "rse"] == ["chain", "span", "event"]
    assert steps["s"]["error"] == "ValueError: bad JSON in tool output"
    assert steps["e"]["error"] is None  # a warning is not a failure
    assert steps["e"]["parent_id"] == "s"
    assert trace["latency_ms"] is None and trace["cost"] == 0


@pytest.mark.parametrize(
    ("filters", "param"),
    [
        (TraceFilters(names=["booking-agent"]), "filter"),
        (TraceFilters(tags=["vip"]), "filter"),
        (TraceFilters(environments=["staging"]), "environment"),
    ],
)
def test_filters_are_applied_on_the_server(fake, filters, param):
    expected = set()
    for index in range(fake.n_traces):
        root = fake.trace_rows(fake.trace_id(index))[0]
        if (
            (not filters.names or root["traceName"] in filters.names)
            and set(filters.tags) <= set(root["tags"])
            and (not filters.environments or root["environment"] in filters.environments)
        ):
            expected.add(root["traceId"])
    assert 0 < len(expected) < fake.n_traces
    traces = all_traces(sync(make_adapter(fake), fake, filters=filters))
    assert set(traces) == expected
    reads = [q for _, path, q in fake.requests if path == "/api/public/v2/observations"]
    assert all(param in q for q in reads)


def test_observation_reads_leave_out_the_field_group_no_trace_is_built_from(fake):
    # createdAt, updatedAt and completionStartTime (the "time" group) end up nowhere in a
    # trace: asked for, they made every page about a tenth bigger to send and to parse.
    traces = all_traces(sync(make_adapter(fake), fake))
    assert len(traces) == fake.n_traces
    reads = [q for _, path, q in fake.requests if path == "/api/public/v2/observations"]
    asked = [set(q["fields"][-1].split(",")) for q in reads]
    assert asked and all("time" not in groups for groups in asked)
    built_from = {"core", "basic", "io", "metadata", "model", "usage", "trace_context"}
    assert all(built_from <= groups for groups in asked)


def test_since_date_filter_drops_older_traces(fake):
    cutoff = fake.trace_start(20)
    traces = all_traces(sync(make_adapter(fake), fake, filters=TraceFilters(since_date=cutoff)))
    assert set(traces) == {fake.trace_id(i) for i in range(20, 30)}


def test_since_date_filter_lets_a_trace_without_a_time_through_to_be_refused_alone():
    # It used to raise TypeError and stop the whole sync.
    cutoff = datetime(2026, 3, 1, tzinfo=UTC)
    filters = TraceFilters(since_date=cutoff)
    assert filters.matches({"id": "t", "timestamp": None})
    assert not filters.matches({"id": "t", "timestamp": "2026-02-28T23:59:59Z"})
    assert filters.matches({"id": "t", "timestamp": "2026-03-01T00:00:00Z"})


def test_watermark_overlap_picks_up_late_and_changed_traces(fake):
    adapter = make_adapter(fake)
    first = sync(adapter, fake)
    watermark = first[-1].max_timestamp
    assert watermark == fake.trace_start(29)
    assert first[-1].cursor is None

    late = fake.add_trace(start=watermark - timedelta(minutes=5))  # arrived after the first sync
    too_late = fake.add_trace(start=watermark - timedelta(hours=2), index=2_000_000)
    changed = fake.trace_id(27)
    fake.update_trace(changed, root={"output": '{"answer": "edited"}'})

    second = all_traces(sync(adapter, fake, since=watermark))
    assert late in second
    assert second[changed]["output"] == {"answer": "edited"}
    assert too_late not in second  # older than the overlap: out of reach by design
    assert fake.trace_id(0) not in second


def test_trace_with_root_before_the_window_is_fetched_whole(fake):
    adapter = make_adapter(fake)
    watermark = sync(adapter, fake)[-1].max_timestamp
    old = fake.trace_id(2)  # its root started long before the next sync's window
    root_id = fake.trace_rows(old)[0]["id"]
    late_start = (watermark + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    fake.update_trace(
        old,
        add_rows=[
            make_row(
                id="late-child",
                traceId=old,
                parentObservationId=root_id,
                startTime=late_start,
                endTime=None,
                type="EVENT",
                name="late",
                traceName="x",
            )
        ],
    )

    traces = all_traces(
        sync(adapter, fake, since=watermark, until=watermark + timedelta(minutes=10))
    )
    assert old in traces and fake.trace_id(3) not in traces
    assert len(traces[old]["steps"]) == 6
    assert {"late-child", root_id} <= {s["id"] for s in traces[old]["steps"]}


def test_resume_from_a_page_cursor_loses_no_trace(overlapping):
    adapter = make_adapter(overlapping, page_limit=9)
    pages = sync(adapter, overlapping)
    middle = pages[len(pages) // 2]
    before = {t["id"] for p in pages[: len(pages) // 2 + 1] for t in p.traces}
    resumed = list(
        adapter.fetch_traces(since=None, until=None, filters=TraceFilters(), cursor=middle.cursor)
    )
    after = {t["id"] for p in resumed for t in p.traces}
    assert before | after == {overlapping.trace_id(i) for i in range(30)}
    for trace in (t for p in resumed for t in p.traces):
        assert len(trace["steps"]) == 6


def test_query_timeout_splits_the_window(fake):
    fake.fail_next(422, 1)
    traces = all_traces(sync(make_adapter(fake), fake))
    assert len(traces) == 30


def test_wrong_keys_fail_permanently_with_a_clear_message(fake):
    adapter = LangfuseAdapter(
        host=fake.url, public_key=fake.public_key, secret_key="sk-lf-wrong-secret", sleep=Sleeps()
    )
    with pytest.raises(AdapterError) as err:
        adapter.test_connection()
    assert err.value.permanent and err.value.code == "auth"
    assert "401" in str(err.value) and "public and secret key" in str(err.value)
    assert "sk-lf-wrong-secret" not in str(err.value)
    with pytest.raises(AdapterError) as err:
        sync(adapter, fake)
    assert err.value.code == "auth"
    assert adapter.sleep == []  # no retry on auth errors


def test_rate_limit_honours_retry_after(fake):
    fake.fail_next(429, 2, retry_after="7")
    adapter = make_adapter(fake)
    traces = all_traces(sync(adapter, fake))
    assert len(traces) == 30
    assert adapter.sleep == [7.0, 7.0]


@pytest.mark.parametrize("header", ["soon", "nan", "inf", "-inf", "Wed, 99 Foo 2026"])
def test_a_retry_after_that_cannot_be_read_falls_back_to_backoff(fake, header):
    """The source's header is outside our control: an odd one must not crash the sync."""
    fake.fail_next(429, 2, retry_after=header)
    adapter = make_adapter(fake)
    assert len(all_traces(sync(adapter, fake))) == 30
    assert adapter.sleep == [1.0, 1.0]  # the body's retryAfterSeconds


def test_a_retry_after_date_waits_until_then(fake):
    then = datetime.now(UTC) + timedelta(seconds=30)
    fake.fail_next(429, 1, retry_after=email.utils.format_datetime(then, usegmt=True))
    adapter = make_adapter(fake)
    assert len(all_traces(sync(adapter, fake))) == 30
    (slept,) = adapter.sleep
    assert 27 < slept <= 30


def test_rate_limit_that_persists_is_transient_with_retry_after(fake):
    fake.fail_next(429, 10, retry_after="12")
    adapter = make_adapter(fake, max_attempts=3)
    with pytest.raises(AdapterError) as err:
        sync(adapter, fake)
    assert (
        not err.value.permanent and err.value.code == "rate_limited" and err.value.retry_after == 12
    )


def test_server_error_then_success(fake):
    fake.fail_next(500, 2)
    adapter = make_adapter(fake)
    assert len(all_traces(sync(adapter, fake))) == 30
    assert adapter.sleep == [1.0, 2.0]


def test_persistent_server_error_is_transient(fake):
    fake.fail_next(500, 50)
    adapter = make_adapter(fake, max_attempts=4)
    with pytest.raises(AdapterError) as err:
        sync(adapter, fake)
    assert not err.value.permanent and err.value.code == "server_error"
    assert len(adapter.sleep) == 3
    assert fake.request_count("/api/public/v2/observations") == 4


def test_slow_server_times_out_as_transient(fake):
    fake.page_delay = 1.5
    adapter = LangfuseAdapter(
        host=fake.url,
        public_key=fake.public_key,
        secret_key=SECRET,
        timeout=0.3,
        sleep=Sleeps(),
        max_attempts=2,
    )
    with pytest.raises(AdapterError) as err:
        sync(adapter, fake)
    assert not err.value.permanent and err.value.code == "timeout"


def test_unreachable_host():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = LangfuseAdapter(
        host=f"http://127.0.0.1:{port}", public_key="pk-lf-x", secret_key=SECRET, sleep=Sleeps()
    )
    with pytest.raises(AdapterError) as err:
        adapter.test_connection()
    assert err.value.code == "unreachable" and not err.value.permanent
    assert "connection was refused" in str(err.value) and SECRET not in str(err.value)


@pytest.mark.parametrize("status", [200, 404])
def test_a_url_that_is_not_langfuse(fake, status):
    fake.html_mode, fake.html_status = True, status
    with pytest.raises(AdapterError) as err:
        make_adapter(fake).test_connection()
    assert err.value.permanent and err.value.code == "not_langfuse"
    assert "does not look like a Langfuse server" in str(err.value)


def test_push_scores_accepted(fake):
    scores = [
        ScoreIn(
            id=f"s-{i}",
            trace_id=fake.trace_id(i),
            name="iofold: grounded",
            value=i % 2 == 0,
            comment=f"why {i}",
        )
        for i in range(3)
    ]
    result = make_adapter(fake).push_scores(scores)
    assert (result.accepted, result.rejected, result.errors) == (3, 0, [])
    assert fake.scores["s-0"]["value"] == 1 and fake.scores["s-1"]["value"] == 0
    assert fake.scores["s-1"]["dataType"] == "BOOLEAN" and fake.scores["s-1"][
        "traceId"
    ] == fake.trace_id(1)
    assert fake.scores["s-2"]["comment"] == "why 2"


def test_push_scores_partially_rejected_surfaces_errors(fake):
    fake.reject_score_ids["s-bad"] = "Trace not found"
    scores = [
        ScoreIn(id="s-ok", trace_id=fake.trace_id(1), name="ok", value=True),
        ScoreIn(id="s-bad", trace_id="nope", name="ok", value=False),
        ScoreIn(
            id="s-env",
            trace_id=fake.trace_id(2),
            name="ok",
            value=True,
            environment="Langfuse-Prod",
        ),
    ]
    result = make_adapter(fake).push_scores(scores)
    assert (result.accepted, result.rejected) == (1, 2)
    assert result.errors[0] == "Trace not found" and "environment" in result.errors[1]
    assert set(fake.scores) == {"s-ok"}


def test_pushing_the_same_score_id_twice_keeps_one_score(fake):
    adapter = make_adapter(fake)
    adapter.push_scores(
        [ScoreIn(id="same", trace_id=fake.trace_id(1), name="n", value=True, comment="first")]
    )
    adapter.push_scores(
        [ScoreIn(id="same", trace_id=fake.trace_id(1), name="n", value=False, comment="second")]
    )
    assert fake.score_posts == 2
    assert list(fake.scores) == ["same"] and fake.scores["same"]["comment"] == "second"


def test_score_push_retries_server_errors_with_the_same_ids(fake):
    fake.fail_next(503, 1)
    adapter = make_adapter(fake)
    result = adapter.push_scores(
        [ScoreIn(id=f"r-{i}", trace_id=fake.trace_id(i), name="n", value=True) for i in range(250)]
    )
    assert result.accepted == 250 and len(fake.scores) == 250
    assert fake.score_posts == 3  # batches of 100; the failed batch was refused before counting


def test_score_batches_are_measured_in_encoded_bytes(fake):
    # 20 comments of 20,000 three-byte characters: 400,000 characters but 1.2 MB on the
    # wire, more than one request may carry under the 1 MiB body limit.
    comment = "\u2603" * 20_000
    scores = [
        ScoreIn(id=f"big-{i}", trace_id=fake.trace_id(i), name="n", value=True, comment=comment)
        for i in range(20)
    ]
    result = make_adapter(fake).push_scores(scores)
    assert result.accepted == 20 and fake.score_posts == 2
    assert all(fake.scores[f"big-{i}"]["comment"] == comment for i in range(20))


def test_score_fields_reach_langfuse_as_the_sdk_would_send_them(fake):
    at = datetime(2026, 11, 20, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    run = uuid.UUID("12345678-1234-5678-1234-567812345678")
    score = ScoreIn(
        id="full",
        trace_id=fake.trace_id(1),
        observation_id="obs-1",
        name="iofold: grounded",
        value=False,
        environment="production",
        timestamp=at,
        metadata={"eval_id": 7, "run": run, "at": at},
    )
    plain = ScoreIn(id="plain", trace_id=fake.trace_id(2), name="n", value=True)
    assert make_adapter(fake).push_scores([score, plain]).accepted == 2
    sent = fake.scores["full"]
    assert sent["timestamp"] == "2026-11-20T10:30:00Z" and sent["observationId"] == "obs-1"
    assert sent["value"] == 0 and sent["environment"] == "production"
    assert sent["metadata"] == {"eval_id": 7, "run": str(run), "at": "2026-11-20T12:30:00+02:00"}
    assert "comment" not in fake.scores["plain"] and "metadata" not in fake.scores["plain"]


def test_score_push_honours_retry_after_and_resends_the_batch(fake):
    fake.fail_next(429, 1, retry_after="5")
    adapter = make_adapter(fake)
    scores = [ScoreIn(id=f"q-{i}", trace_id=fake.trace_id(i), name="n", value=True) for i in (1, 2)]
    assert adapter.push_scores(scores).accepted == 2
    assert adapter.sleep == [5.0] and set(fake.scores) == {"q-1", "q-2"}


@pytest.mark.parametrize(
    ("setup", "code", "permanent"),
    [
        (lambda fake: fake.fail_next(400), "bad_request", True),
        (lambda fake: setattr(fake, "secret_key", "sk-lf-other"), "auth", True),
        (lambda fake: setattr(fake, "html_mode", True), "not_langfuse", True),
        (lambda fake: fake.fail_next(503, 10), "server_error", False),
        (lambda fake: fake.fail_next(429, 10), "rate_limited", False),
    ],
)
def test_score_push_failures_raise_adapter_errors(fake, setup, code, permanent):
    adapter = make_adapter(fake, max_attempts=2)
    setup(fake)
    with pytest.raises(AdapterError) as err:
        adapter.push_scores([ScoreIn(id="x", trace_id=fake.trace_id(1), name="n", value=True)])
    assert (err.value.code, err.value.permanent) == (code, permanent)
    assert fake.scores == {}


def test_export_format_normalises_like_the_api():
    export = {
        "id": "trace-1",
        "timestamp": "2026-11-20T10:00:00.000Z",
        "name": "weather-agent",
        "input": {"question": "Weather?"},
        "output": {"answer": "Sunny"},
        "tags": ["prod"],
        "userId": "u1",
        "sessionId": "",
        "metadata": {"team": "a"},
        "latency": 2.1,
        "totalCost": 0.0031,
        "environment": "production",
        "observations": [
            {
                "id": "o1",
                "traceId": "trace-1",
                "type": "AGENT",
                "name": "weather-agent",
                "startTime": "2026-11-20T10:00:00.000Z",
                "endTime": "2026-11-20T10:00:02.100Z",
                "parentObservationId": None,
                "input": {"question": "Weather?"},
                "output": {"answer": "Sunny"},
                "level": "DEFAULT",
                "metadata": {},
            },
            {
                "id": "o2",
                "traceId": "trace-1",
                "type": "GENERATION",
                "name": "plan",
                "startTime": "2026-11-20T10:00:00.400Z",
                "endTime": "2026-11-20T10:00:01.800Z",
                "parentObservationId": "o1",
                "model": "gpt-4o",
                "usage": {"input": 52, "output": 18, "total": 70, "unit": "TOKENS"},
                "calculatedTotalCost": 0.0031,
                "input": [{"role": "user", "content": "Weather?"}],
                "output": {"role": "assistant", "content": "Sunny"},
            },
            {
                "id": "o3",
                "traceId": "trace-1",
                "type": "TOOL",
                "name": "get_weather",
                "startTime": "2026-11-20T10:00:01.900Z",
                "endTime": "2026-11-20T10:00:02.000Z",
                "parentObservationId": "o1",
                "level": "ERROR",
                "statusMessage": "boom",
            },
        ],
    }
    import json

    trace = normalise_langfuse_export(json.dumps(export))
    assert validate_normalised_trace(trace) == []
    assert trace["latency_ms"] == pytest.approx(2100) and trace["cost"] == pytest.approx(0.0031)
    assert trace["session_id"] is None and trace["metadata"] == {
        "team": "a",
        "environment": "production",
    }
    steps = {s["id"]: s for s in trace["steps"]}
    assert steps["o2"]["usage"] == {"input": 52, "output": 18} and steps["o2"]["model"] == "gpt-4o"
    assert steps["o3"]["error"] == "boom" and steps["o3"]["parent_id"] == "o1"
    with pytest.raises(ValueError):
        normalise_langfuse_export({"observations": []})


MALFORMED = [None, "", " ", 0, 7, -1.5, True, False, [], ["x", 1], {}, {"a": [1]}, "text"]
ROOT_ROW = make_row(
    id="o1", traceId="t1", type="AGENT", name="agent", traceName="agent", tags=["prod"],
    startTime="2026-11-20T10:00:00.000Z", endTime="2026-11-20T10:00:02.100Z",
    input='{"question": "Weather?"}', output='{"answer": "Sunny"}', userId="u", sessionId="s",
    isRootObservation=True, metadata={"team": "a"},
)  # fmt: skip
CHILD_ROW = {
    **ROOT_ROW, "id": "o2", "type": "GENERATION", "name": "plan", "parentObservationId": "o1",
    "isRootObservation": False, "startTime": "2026-11-20T10:00:00.400Z", "model": "gpt-4o",
    "usageDetails": {"input": 52, "output": 18}, "totalCost": 0.0031,
}  # fmt: skip


@pytest.mark.parametrize("which", ["root", "child"])
@pytest.mark.parametrize("field", sorted(set(ROOT_ROW) - {"id", "traceId", "startTime", "endTime"}))
def test_whatever_an_observation_holds_its_trace_passes_the_schema_check(which, field):
    """What ``TracePage.checked`` claims for Langfuse pages: malformed rows still make
    valid, canonical traces; a time that is no date raises, as it did before."""
    for value in MALFORMED:
        root, child = dict(ROOT_ROW), dict(CHILD_ROW)
        (root if which == "root" else child)[field] = value
        trace = normalise_rows("t1", [root, child])
        assert validate_normalised_trace(trace) == [], (field, value)
        assert canonical_trace(trace) == trace, (field, value)  # nothing left to fill in


def test_odd_names_tags_token_counts_and_repeated_rows_make_a_trace_not_a_refusal():
    # Each of these was refused by the schema check (or crashed the page: "many" tokens).
    root = {**ROOT_ROW, "traceName": 42, "tags": "prod", "name": ["agent", 2]}
    child = {**CHILD_ROW, "usageDetails": {"input": "many", "output": 18.0}}
    trace = normalise_rows(" t1 ", [root, child, dict(child)])
    assert validate_normalised_trace(trace) == []
    assert (trace["id"], trace["name"], trace["tags"]) == ("t1", "42", ["prod"])
    assert [s["id"] for s in trace["steps"]] == ["o1", "o2"]  # the row read twice is one step
    assert trace["steps"][0]["name"] == "['agent', 2]"
    assert trace["steps"][1]["usage"] == {"input": 0, "output": 18}


IO_TEXTS = [
    '{"question": "Where is my order #528?"}', ' [1, 2.5, -0.0, 1e-07, 1.5e300] ', '"text"',
    "null", "true", "12345678901234567890123", '{"big": 123456789012345678901, "a": 1, "a": 2}',
    "[NaN, Infinity]", "[1e400]", '"\\ud800 lone"', "[" * 5000 + "]" * 5000, "{not json",
    "plain words", "", "  ", "7",
]  # fmt: skip


@pytest.mark.parametrize("text", IO_TEXTS)
def test_an_input_or_output_text_reads_as_json_loads_reads_it(text):
    # Parsed by orjson where it reads the same values: a sync parses a dozen a trace.
    try:
        expected = json.loads(text.strip()) if text.strip()[:1] in '{["' or text.strip() in (
            "null", "true", "false") else text  # fmt: skip
    except (ValueError, RecursionError):
        expected = text
    assert repr(parse_io(text)) == repr(expected)


def test_validate_normalised_trace_reports_problems():
    bad = {
        "id": "",
        "timestamp": "yesterday",
        "tags": [1],
        "steps": [
            {
                "id": "a",
                "parent_id": "missing",
                "type": "robot",
                "name": "x",
                "usage": {"input": "3", "output": 1},
            },
            {"id": "a", "type": "llm", "name": "y"},
        ],
    }
    problems = validate_normalised_trace(bad)
    text = "\n".join(problems)
    for needle in (
        "'id' must not be empty",
        "not an ISO-8601",
        "list of strings",
        "unique",
        "'robot'",
        "'missing'",
        "usage.input",
    ):
        assert needle in text
    assert validate_normalised_trace([]) == ["trace must be a JSON object"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-03-01T10:20:30.456Z", "2026-03-01T10:20:30.456Z"),
        ("2026-03-01 10:20:30.456Z", "2026-03-01T10:20:30.456Z"),  # a space for the T
        ("2026-W01-1T10:20:30.456Z", "2025-12-29T10:20:30.456Z"),  # an ISO week date
        ("2026-03-01T10:20:30.456789Z", "2026-03-01T10:20:30.456Z"),
        ("2026-03-01T10:20:30+00:00", "2026-03-01T10:20:30.000Z"),
        ("2026-03-01T11:20:30.456+01:00", "2026-03-01T10:20:30.456Z"),
        ("2026-03-01T10:20:30,456Z", "2026-03-01T10:20:30.456Z"),  # a comma for the point
    ],
)
def test_a_step_time_is_stored_in_one_shape_whatever_shape_it_came_in(sent, stored):
    step = normalise_rows("t", [make_row(id="o", traceId="t", startTime=sent, endTime=sent)])
    assert step["steps"][0]["start_time"] == stored == step["steps"][0]["end_time"]


@pytest.mark.parametrize("field", ["startTime", "endTime"])
def test_a_step_time_that_is_no_date_is_refused(field):
    times = {"startTime": "2026-02-28T00:00:00.000Z", field: "2026-02-30T00:00:00.000Z"}
    with pytest.raises(ValueError):
        normalise_rows("t", [make_row(id="o", traceId="t", **times)])


def test_a_trace_field_comes_from_the_first_row_that_has_a_value_for_it():
    # Langfuse (ClickHouse) writes "", [] or {} where a row has no value: the next row's
    # counts; a number, even 0, is a value.
    root = make_row(id="r", traceId="t", startTime="2026-03-01T10:00:00.000Z", release=0)
    child = make_row(
        id="c",
        traceId="t",
        parentObservationId="r",
        startTime="2026-03-01T10:00:01.000Z",
        version="v2",
        tags=["x"],
        userId="u",
        release="r1",
    )
    trace = normalise_rows("t", [root, child])
    assert trace["metadata"]["version"] == "v2"
    assert trace["metadata"]["release"] == 0
    assert (trace["tags"], trace["user_id"]) == (["x"], "u")
