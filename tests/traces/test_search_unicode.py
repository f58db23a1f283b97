"""Free-text search finds a word whatever Unicode form or case its trace or its query was
written in, on PostgreSQL and SQLite alike.

"café" typed on a keyboard is NFC (one code point for "é"); macOS and some SDKs send NFD
("e" + a combining accent); full-width letters are compatibility forms. Each looks the same
on screen, so a search for one must find the others. Case is folded for every script
("ÉCOLE" finds "école", "МОСКВА" finds "москва"): SQLite's LIKE folds ASCII letters only.
"""

import importlib

import pytest
from django.db import connection
from django.urls import reverse

from traces.filters import TraceFilters
from traces.ingest import upsert_traces
from traces.models import Trace

pytestmark = pytest.mark.django_db

NFC, NFD = "caf\u00e9", "cafe\u0301"
FULL_WIDTH = "\uff43\uff41\uff46\u00e9"  # ｃａｆé


def ingest(workspace, external_id: str, text: str) -> None:
    trace = {
        "id": external_id,
        "name": "support-agent",
        "timestamp": "2026-11-20T10:00:00Z",
        "input": {"q": f"a {text} near the station?"},
        "output": {"a": "yes"},
        "steps": [],
        "tags": [],
    }
    upsert_traces(workspace=workspace, source="api", traces=[trace])


def listed(client, workspace, q: str) -> set[str]:
    page = client.get(reverse("traces:list", kwargs={"slug": workspace.slug}), {"q": q})
    return {trace.external_id for trace in page.context["page"].traces}


def api_listed(api_client, q: str) -> set[str]:
    body = api_client.get(reverse("api-traces"), {"q": q}, headers={"X-Workspace": "acme"})
    assert body.status_code == 200
    return {row["external_id"] for row in body.json()["results"]}


@pytest.mark.parametrize(
    ("stored", "typed"),
    [(NFD, NFC), (NFC, NFD), (FULL_WIDTH, NFC), (NFC, FULL_WIDTH), (NFD, "CAF\u00c9")],
    ids=["nfd-stored-nfc-query", "nfc-stored-nfd-query", "full-width-stored",
         "full-width-query", "nfd-stored-upper-query"],
)  # fmt: skip
def test_the_list_and_the_api_find_a_word_in_another_normal_form(
    login, api_client, workspace, owner, stored, typed
):
    ingest(workspace, "accented", stored)
    ingest(workspace, "plain", "tea room")

    assert listed(login(owner), workspace, typed) == {"accented"}
    api_client.force_login(owner)
    assert api_listed(api_client, typed) == {"accented"}
    # The page shows the query as the user typed it.
    page = login(owner).get(reverse("traces:list", kwargs={"slug": workspace.slug}), {"q": typed})
    assert f'name="q" value="{typed}"' in page.content.decode()


@pytest.mark.parametrize(
    ("stored", "typed"),
    [("\u00e9cole", "\u00c9COLE"), ("\u00c9COLE", "\u00e9cole"), ("\u00c9cole", "\u00c9COLE"),
     ("\u041c\u041e\u0421\u041a\u0412\u0410", "\u043c\u043e\u0441\u043a\u0432\u0430"),
     ("\u03c3\u03bf\u03c6\u03af\u03b1", "\u03a3\u039f\u03a6\u038a\u0391"),
     ("Stra\u00dfe", "STRASSE"), ("STRASSE", "stra\u00dfe")],
    ids=["lower-stored-upper-query", "upper-stored-lower-query", "title-stored-upper-query",
         "cyrillic", "greek", "sharp-s-stored", "sharp-s-query"],
)  # fmt: skip
def test_search_folds_the_case_of_every_script(login, workspace, owner, stored, typed):
    """Before: on SQLite, "ÉCOLE" did not find "école" (LIKE folds ASCII letters only)."""
    ingest(workspace, "word", stored)
    ingest(workspace, "plain", "tea room")

    assert listed(login(owner), workspace, typed) == {"word"}
    saved = TraceFilters.from_data({"q": typed})
    assert [t.external_id for t in saved.apply(Trace.objects.for_workspace(workspace))] == ["word"]


def test_an_eval_set_filter_saved_before_finds_the_other_form(workspace):
    ingest(workspace, "accented", NFD)
    saved = TraceFilters.from_data({"q": NFC})
    assert [t.external_id for t in saved.apply(Trace.objects.for_workspace(workspace))] == [
        "accented"
    ]


def test_ascii_search_text_is_stored_as_sent(login, workspace, owner):
    ingest(workspace, "plain", "Tea Room")
    trace = Trace.objects.for_workspace(workspace).get()
    assert '"q": "a Tea Room near the station?"' in trace.search_text
    assert listed(login(owner), workspace, "tea ROOM") == {"plain"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram index is PostgreSQL's")
def test_a_normalised_query_still_uses_the_trigram_index(workspace):
    ingest(workspace, "accented", NFD)
    # All workspaces' traces, as on a big installation where the index is what answers.
    qs = TraceFilters.from_data({"q": NFD}).apply(Trace.objects.all())
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()
    assert "trace_search_trgm_idx" in plan
    assert "(upper(search_text) ~~ '%CAF\u00c9%'::text)" in plan  # the NFC pattern
    assert [t.external_id for t in qs] == ["accented"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_rows_stored_before_in_batches(monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    migration = importlib.import_module("traces.migrations.0020_search_text_unicode_form")
    monkeypatch.setattr(migration, "BATCH", 2)  # three rows to rewrite: two batches
    before = [("traces", "0019_criteria_length_cap")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    workspace = apps.get_model("workspaces", "Workspace").objects.create(name="W", slug="w")
    OldTrace = apps.get_model("traces", "Trace")
    texts = {"nfd": f"a {NFD}", "wide": FULL_WIDTH, "ascii": "tea room", "nfd2": NFD + "!"}
    for external_id, text in texts.items():
        OldTrace.objects.create(
            workspace=workspace, source="api", source_key="api", external_id=external_id,
            timestamp="2026-01-01T00:00:00Z", data={"id": external_id}, search_text=text,
        )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    stored = dict(Trace.objects.values_list("external_id", "search_text"))
    assert stored == {
        "nfd": f"a {NFC}",
        "wide": "caf\u00e9",
        "ascii": "tea room",
        "nfd2": NFC + "!",
    }
    found = TraceFilters.from_data({"q": NFC}).apply(Trace.objects.all())
    assert {t.external_id for t in found} == {"nfd", "wide", "nfd2"}

    # Backwards is a no-op that leaves the rows as they are.
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert dict(Trace.objects.values_list("external_id", "search_text")) == stored


@pytest.mark.django_db(transaction=True)
def test_the_case_folding_migration_rewrites_rows_stored_before(monkeypatch):
    from django.db.migrations.executor import MigrationExecutor

    unicode_form = importlib.import_module("traces.migrations.0020_search_text_unicode_form")
    monkeypatch.setattr(unicode_form, "BATCH", 2)  # three rows to rewrite: two batches
    before = [("traces", "0020_search_text_unicode_form")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    workspace = apps.get_model("workspaces", "Workspace").objects.create(name="W", slug="w")
    OldTrace = apps.get_model("traces", "Trace")
    texts = {"fr": "L'\u00c9COLE", "ru": "\u041c\u041e\u0421\u041a\u0412\u0410",
             "de": "Stra\u00dfe", "ascii": "Tea Room", "done": "\u00e9cole"}  # fmt: skip
    for external_id, text in texts.items():
        OldTrace.objects.create(
            workspace=workspace, source="api", source_key="api", external_id=external_id,
            timestamp="2026-01-01T00:00:00Z", data={"id": external_id}, search_text=text,
        )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    stored = dict(Trace.objects.values_list("external_id", "search_text"))
    assert stored == {
        "fr": "l'\u00e9cole",
        "ru": "\u043c\u043e\u0441\u043a\u0432\u0430",
        "de": "strasse",
        "ascii": "Tea Room",  # LIKE folds ASCII itself
        "done": "\u00e9cole",
    }
    found = TraceFilters.from_data({"q": "\u00c9COLE"}).apply(Trace.objects.all())
    assert {t.external_id for t in found} == {"fr", "done"}

    # Backwards is a no-op; forwards again rewrites nothing.
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert dict(Trace.objects.values_list("external_id", "search_text")) == stored
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Trace.objects.values_list("external_id", "search_text")) == stored
