import pytest
from django.urls import reverse

from tests.traces.factories import TraceFactory
from traces import services
from traces.exceptions import TraceError
from traces.models import EvalSet, Feedback, LabelChange

WS = {"X-Workspace": "acme"}


def test_trace_list_pages_with_cursor(api_client, workspace, owner, traces):
    api_client.force_login(owner)
    first = api_client.get(reverse("api-traces"), {"limit": 5}, headers=WS).json()
    assert len(first["results"]) == 5 and first["next_cursor"]
    second = api_client.get(
        reverse("api-traces"), {"limit": 5, "cursor": first["next_cursor"]}, headers=WS
    ).json()
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}
    assert first["results"][0]["label_counts"] == {"positive": 0, "negative": 0, "neutral": 0}


def test_trace_detail_includes_payload(api_client, workspace, owner, traces):
    api_client.force_login(owner)
    body = api_client.get(reverse("api-trace", kwargs={"pk": traces[0].pk}), headers=WS).json()
    assert body["data"]["steps"][1]["name"] == "lookup_order"


def test_eval_set_crud(api_client, workspace, owner, traces):
    api_client.force_login(owner)
    created = api_client.post(
        reverse("api-eval-sets"),
        {"name": "Refunds", "criteria": "Cites policy", "trace_ids": [traces[0].pk]},
        format="json",
        headers=WS,
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert created.json()["target_labels"] == 10
    detail = reverse("api-eval-set", kwargs={"pk": pk})
    patched = api_client.patch(
        detail,
        {"target_labels": 20, "source_kind": "filter", "saved_filter": {"tag": "support"}},
        format="json",
        headers=WS,
    )
    assert patched.status_code == 200
    assert patched.json()["saved_filter"] == {"tag": "support"}
    assert api_client.delete(detail, headers=WS).status_code == 204
    assert EvalSet.objects.get(pk=pk).is_archived
    assert api_client.get(reverse("api-eval-sets"), headers=WS).json()["results"] == []


def test_eval_set_list_pages_by_limit_and_offset_as_the_other_lists(api_client, workspace, owner):
    api_client.force_login(owner)
    for name in ("First", "Second", "Third"):
        services.create_eval_set(workspace=workspace, name=name, criteria="c", created_by=owner)
    url = reverse("api-eval-sets")

    first = api_client.get(url, {"limit": 2}, headers=WS).json()
    rest = api_client.get(url, {"limit": 2, "offset": 2}, headers=WS).json()

    # Newest first, two a page, with the total and the next page's address.
    assert [s["name"] for s in first["results"]] == ["Third", "Second"]
    assert (first["count"], first["next"].endswith("?limit=2&offset=2")) == (3, True)
    assert ([s["name"] for s in rest["results"]], rest["next"]) == (["First"], None)
    assert rest["results"][0]["summary"]["labelled_traces"] == 0
    for bad in ({"limit": "ten"}, {"offset": "-1"}):
        refused = api_client.get(url, bad, headers=WS)
        assert (refused.status_code, list(refused.json())) == (400, list(bad))


def test_eval_set_list_reads_archived_or_says_it_cannot(api_client, workspace, owner):
    api_client.force_login(owner)
    kept = services.create_eval_set(workspace=workspace, name="Kept", criteria="c")
    old = services.create_eval_set(workspace=workspace, name="Old", criteria="c")
    api_client.delete(reverse("api-eval-set", kwargs={"pk": old.pk}), headers=WS)
    url = reverse("api-eval-sets")

    def names(params):
        return [s["name"] for s in api_client.get(url, params, headers=WS).json()["results"]]

    assert names({"archived": "true"}) == names({"archived": "yes"}) == ["Old"]
    assert names({"archived": "false"}) == names({}) == [kept.name]
    refused = api_client.get(url, {"archived": "bogus"}, headers=WS)
    assert (refused.status_code, list(refused.json())) == (400, ["archived"])


def test_eval_set_validation_errors(api_client, workspace, owner):
    api_client.force_login(owner)
    response = api_client.post(
        reverse("api-eval-sets"), {"name": "x", "target_labels": 0}, format="json", headers=WS
    )
    assert response.status_code == 400
    assert set(response.json()) >= {"criteria", "target_labels"}


def test_adding_unknown_traces_is_a_400(api_client, workspace, owner, other_workspace):
    foreign = TraceFactory(workspace=other_workspace)
    api_client.force_login(owner)
    eval_set = services.create_eval_set(workspace=workspace, name="E", criteria="c")
    response = api_client.post(
        reverse("api-eval-set-traces", kwargs={"pk": eval_set.pk}),
        {"trace_ids": [foreign.pk]},
        format="json",
        headers=WS,
    )
    assert response.status_code == 400 and str(foreign.pk) in response.json()["detail"]


def test_feedback_create_update_list(api_client, workspace, owner, member, eval_set, traces):
    api_client.force_login(owner)
    body = {"eval_set": eval_set.pk, "trace": traces[0].pk, "rating": "positive", "note": "ok"}
    created = api_client.post(reverse("api-feedback"), body, format="json", headers=WS)
    assert created.status_code == 201
    again = api_client.post(
        reverse("api-feedback"), {**body, "rating": "negative"}, format="json", headers=WS
    )
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    detail = reverse("api-feedback-detail", kwargs={"pk": created.json()["id"]})
    patched = api_client.patch(detail, {"note": "wrong order"}, format="json", headers=WS)
    assert patched.json()["rating"] == "negative" and patched.json()["note"] == "wrong order"
    services.record_feedback(eval_set=eval_set, trace=traces[1], user=member, rating="neutral")
    listed = api_client.get(reverse("api-feedback"), {"eval_set": eval_set.pk}, headers=WS).json()
    assert {f["user"] for f in listed["results"]} == {owner.email, member.email}
    mine = api_client.get(reverse("api-feedback"), {"mine": "true"}, headers=WS).json()
    assert [f["user"] for f in mine["results"]] == [owner.email]


def test_bad_rating_is_a_400(api_client, workspace, owner, eval_set, traces):
    api_client.force_login(owner)
    response = api_client.post(
        reverse("api-feedback"),
        {"eval_set": eval_set.pk, "trace": traces[0].pk, "rating": "great"},
        format="json",
        headers=WS,
    )
    assert response.status_code == 400 and "rating" in response.json()


def test_unknown_or_foreign_trace_is_a_404(api_client, workspace, owner, other_workspace, eval_set):
    foreign = TraceFactory(workspace=other_workspace)
    api_client.force_login(owner)
    for trace_pk in (foreign.pk, 987_654):
        response = api_client.post(
            reverse("api-feedback"),
            {"eval_set": eval_set.pk, "trace": trace_pk, "rating": "positive"},
            format="json",
            headers=WS,
        )
        assert response.status_code == 404
    assert not Feedback.objects.exists()


def test_trace_outside_the_set_is_a_400(api_client, workspace, owner, eval_set):
    stray = TraceFactory(workspace=workspace)
    api_client.force_login(owner)
    response = api_client.post(
        reverse("api-feedback"),
        {"eval_set": eval_set.pk, "trace": stray.pk, "rating": "positive"},
        format="json",
        headers=WS,
    )
    assert response.status_code == 400


def _label_url(eval_set, trace, *, by) -> str:
    """Label ``trace`` good as ``by``; return the label's API URL."""
    fb, _ = services.record_feedback(eval_set=eval_set, trace=trace, user=by, rating="positive")
    return reverse("api-feedback-detail", kwargs={"pk": fb.pk})


def test_a_member_changes_only_their_own_labels(
    api_client, workspace, owner, member, eval_set, traces
):
    detail = _label_url(eval_set, traces[0], by=owner)
    api_client.force_login(member)

    patched = api_client.patch(detail, {"rating": "negative"}, format="json", headers=WS)
    deleted = api_client.delete(detail, headers=WS)

    assert patched.status_code == 403 and deleted.status_code == 403
    assert api_client.get(detail, headers=WS).json()["rating"] == "positive"


def test_an_owner_changes_and_removes_anyones_label_on_the_record(
    api_client, workspace, owner, member, eval_set, traces
):
    """As on the eval set's page: the label keeps its reviewer, the audit names the editor."""
    detail = _label_url(eval_set, traces[0], by=member)
    api_client.force_login(owner)

    patched = api_client.patch(detail, {"rating": "negative"}, format="json", headers=WS)
    assert patched.status_code == 200
    assert patched.json()["rating"] == "negative" and patched.json()["user"] == member.email
    assert api_client.delete(detail, headers=WS).status_code == 204

    assert not Feedback.objects.filter(eval_set=eval_set).exists()
    audit = LabelChange.objects.filter(eval_set=eval_set).order_by("pk")
    assert [(c.action, c.changed_by_id) for c in audit] == [
        ("created", member.pk),
        ("changed", owner.pk),
        ("removed", owner.pk),
    ]


def test_a_label_withdrawn_through_the_api_stays_in_the_audit(
    api_client, workspace, member, eval_set, traces
):
    detail = _label_url(eval_set, traces[0], by=member)
    api_client.force_login(member)

    response = api_client.delete(detail, headers=WS)

    assert response.status_code == 204
    removed = LabelChange.objects.get(eval_set=eval_set, action="removed")
    assert (removed.changed_by, removed.rating_before) == (member, "positive")


def test_schema_documents_the_endpoints(api_client):
    schema = api_client.get(reverse("api-schema"), {"format": "json"}).json()
    for path in ("/api/v1/traces/", "/api/v1/eval-sets/{id}/", "/api/v1/feedback/"):
        assert path in schema["paths"], path
    feedback_post = schema["paths"]["/api/v1/feedback/"]["post"]
    ref = feedback_post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert "FeedbackIn" in ref


def test_feedback_post_is_scoped_like_the_url_matrix(
    api_client, workspace, owner, viewer, outsider, eval_set, traces
):
    """POST /feedback/ names its objects in the body, so it is checked here, not in the matrix."""
    body = {"eval_set": eval_set.pk, "trace": traces[0].pk, "rating": "positive"}
    api_client.force_login(viewer)
    assert (
        api_client.post(reverse("api-feedback"), body, format="json", headers=WS).status_code == 403
    )
    api_client.force_login(outsider)
    assert (
        api_client.post(reverse("api-feedback"), body, format="json", headers=WS).status_code == 404
    )
    own = api_client.post(
        reverse("api-feedback"), body, format="json", headers={"X-Workspace": "globex"}
    )
    assert own.status_code == 404
    assert not Feedback.objects.exists()


def test_feedback_list_filters_by_rating_and_refuses_a_rating_it_does_not_know(
    api_client, workspace, owner, eval_set, traces
):
    api_client.force_login(owner)
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    services.record_feedback(eval_set=eval_set, trace=traces[1], user=owner, rating="negative")
    bad = api_client.get(reverse("api-feedback"), {"rating": "bogus"}, headers=WS)
    assert bad.status_code == 400 and list(bad.json()) == ["rating"]
    assert api_client.get(reverse("api-feedback"), {"mine": "maybe"}, headers=WS).status_code == 400
    good = api_client.get(reverse("api-feedback"), {"rating": "positive"}, headers=WS).json()
    assert [f["trace"] for f in good["results"]] == [traces[0].pk]


def test_trace_and_conversation_lists_refuse_a_limit_below_one(api_client, workspace, owner):
    api_client.force_login(owner)
    for name in ("api-traces", "api-conversations"):
        for limit in ("0", "-5"):
            response = api_client.get(reverse(name), {"limit": limit}, headers=WS)
            assert response.status_code == 400 and list(response.json()) == ["limit"], name
        assert api_client.get(reverse(name), {"limit": "500"}, headers=WS).status_code == 200


def test_a_big_traces_detail_comes_a_window_of_steps_at_a_time(api_client, workspace, owner):
    from tests.traces.factories import trace_data

    data = trace_data(1)
    data["steps"] = [
        {"id": f"s{n}", "parent_id": "s0" if n else None, "name": f"step {n}", "type": "tool",
         "output": "x" * 1000}
        for n in range(1_201)
    ]  # fmt: skip
    trace = TraceFactory(workspace=workspace, data=data)
    api_client.force_login(owner)
    url = reverse("api-trace", kwargs={"pk": trace.pk})

    first = api_client.get(url, headers=WS)
    body = first.json()
    assert len(first.content) < 600_000  # 500 steps of about 1 KB, not 1.2 MB
    assert body["steps_page"] == {"offset": 0, "limit": 500, "total": 1201, "next_offset": 500}
    assert body["data"]["input"] == data["input"]  # the rest of the data is whole
    names = [s["name"] for s in body["data"]["steps"]]
    while body["steps_page"]["next_offset"] is not None:
        offset = body["steps_page"]["next_offset"]
        body = api_client.get(url, {"steps_offset": offset}, headers=WS).json()
        names += [s["name"] for s in body["data"]["steps"]]
    assert names == [f"step {n}" for n in range(1_201)]
    assert body["steps_page"] == {"offset": 1000, "limit": 500, "total": 1201, "next_offset": None}

    small = api_client.get(url, {"steps_offset": 3, "steps_limit": 2}, headers=WS).json()
    assert [s["id"] for s in small["data"]["steps"]] == ["s3", "s4"]
    refused = api_client.get(url, {"steps_offset": "-1", "steps_limit": "0"}, headers=WS)
    assert refused.status_code == 400 and set(refused.json()) == {"steps_offset", "steps_limit"}


def test_a_long_conversations_detail_comes_a_window_of_turns_at_a_time(
    api_client, workspace, owner
):
    import datetime as dt

    from iofold.pipeline import ingest_traces
    from tests.traces.factories import trace_data
    from traces.models import Conversation

    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    turns = []
    for n in range(60):
        turn = trace_data(n)
        turn.update(
            id=f"turn-{n}", session_id="long",
            timestamp=(start + dt.timedelta(minutes=n)).isoformat(),
        )  # fmt: skip
        turns.append(turn)
    ingest_traces(workspace=workspace, source="upload", traces=turns)
    conversation = Conversation.objects.for_workspace(workspace).get(external_id="long")
    api_client.force_login(owner)
    url = reverse("api-conversation", kwargs={"pk": conversation.pk})

    body = api_client.get(url, headers=WS).json()
    assert body["turn_count"] == 60 and len(body["turn_ids"]) == 50
    assert body["turns_page"] == {"offset": 0, "limit": 50, "total": 60, "next_offset": 50}
    assert len(body["conversation"]["turns"]) == 50
    rest = api_client.get(url, {"turns_offset": 50}, headers=WS).json()
    assert rest["turns_page"]["next_offset"] is None and len(rest["turn_ids"]) == 10
    ids = body["turn_ids"] + rest["turn_ids"]
    assert [t["id"] for t in rest["conversation"]["turns"]] == [f"turn-{n}" for n in range(50, 60)]
    assert len(set(ids)) == 60
    refused = api_client.get(url, {"turns_limit": "lots"}, headers=WS)
    assert refused.status_code == 400 and "turns_limit" in refused.json()


def test_criteria_longer_than_the_limit_are_refused_everywhere_naming_it(
    api_client, client, workspace, owner
):
    from django.core.exceptions import ValidationError

    from traces.services import create_eval_set, update_eval_set

    too_long = ("Cites the refund policy. " * 161).strip()  # 4,024 characters
    api_client.force_login(owner)

    created = api_client.post(
        reverse("api-eval-sets"), {"name": "Refunds", "criteria": too_long}, format="json",
        headers=WS,
    )  # fmt: skip
    assert created.status_code == 400
    assert "4000" in created.json()["criteria"][0]
    assert not EvalSet.objects.for_workspace(workspace).exists()

    eval_set = create_eval_set(workspace=workspace, name="Refunds", criteria="Cites policy")
    patched = api_client.patch(
        reverse("api-eval-set", kwargs={"pk": eval_set.pk}), {"criteria": too_long},
        format="json", headers=WS,
    )  # fmt: skip
    assert patched.status_code == 400 and "4000" in patched.json()["criteria"][0]

    client.force_login(owner)
    page = client.post(
        reverse("traces:evalset_create", kwargs={"slug": workspace.slug}),
        {"name": "Other", "criteria": too_long, "target_labels": 10, "source_kind": "manual"},
    )
    assert page.status_code == 400
    assert "at most 4000 characters" in page.content.decode()
    assert EvalSet.objects.for_workspace(workspace).count() == 1

    # The service and the model refuse it too, whatever calls them.
    with pytest.raises(TraceError, match="4,024 characters long: at most 4,000"):
        update_eval_set(eval_set=eval_set, criteria=too_long)
    eval_set.refresh_from_db()
    assert eval_set.criteria == "Cites policy"
    eval_set.criteria = too_long
    with pytest.raises(ValidationError) as refused:
        eval_set.full_clean()
    assert "criteria" in refused.value.message_dict
