"""The API as a whole: bounded pages, errors mapped to 4xx, and a fuzz of every operation.

The fuzz walks every POST, PUT, PATCH and DELETE operation of the OpenAPI schema (made
in-process by drf-spectacular), plus the signed webhook, as the owner of a workspace
whose integration, traces, eval set, label and eval make every path id resolve. Each
operation gets broken bodies (empty, wrong JSON types, nesting 10,000 deep, invalid
UTF-8, lone surrogates, NUL), the wrong content types, out-of-range path ids, and a
plausible body with one field at a time set to a wrong type or an extreme, or a list
field with one odd element more (a 30-digit id, -1, a string, null). Whatever
arrives, the answer is never a 5xx.

Every GET operation gets each of its documented query parameters, and the common ones
(limit, offset, page, page_size, cursor, ordering, q, workspace), set to each of QUERY_VALUES, then
wrong path ids: 0, 30 digits, another workspace's object (a 404). No answer is a 5xx.
"""

import base64
import json
import time
from dataclasses import dataclass

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from evals.models import Eval
from integrations import services as integration_services
from integrations import webhooks
from integrations.models import Integration, SyncRun
from iofold.api import exception_handler
from tests.evals.builders import make_eval, record
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces.models import EvalSet, Feedback, Trace
from traces.services import add_traces_to_eval_set, record_feedback

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
WRITE_METHODS = ("post", "put", "patch", "delete")
WRITE_OPERATIONS = sorted(
    (method, path)
    for path, operations in SCHEMA["paths"].items()
    for method in operations
    if method in WRITE_METHODS
)
LIST_OPERATIONS = sorted(
    path
    for path, operations in SCHEMA["paths"].items()
    if any(p["name"] == "limit" for p in operations.get("get", {}).get("parameters", []))
)
WEBHOOK = ("post", "/api/v1/integrations/{id}/webhook")  # a plain view: not in the schema
# Testing the connection to the world's Langfuse (nothing listens there) is refused.
# Labelling the world's conversation in its eval set, which judges traces, is refused.
REFUSED_WHEN_PLAUSIBLE = {
    ("post", "/api/v1/integrations/{id}/test/"),
    ("post", "/api/v1/conversations/{id}/labels/"),
    # The world's eval is a draft: only a shadow that wins beyond noise is promoted.
    ("post", "/api/v1/evals/{id}/promote/"),
}


@dataclass
class World:
    """One workspace's objects, so that every path id of the schema resolves."""

    workspace: object
    integration: Integration
    run: SyncRun
    trace: Trace
    eval_set: EvalSet
    feedback: Feedback
    eval: Eval
    conversation: object = None
    deletion: object = None


@pytest.fixture
def world(workspace, owner) -> World:
    return make_world(workspace, owner)


def make_world(workspace, owner) -> World:
    """Build ``workspace``'s world: ``owner`` labels its traces. tests/test_views_fuzz.py
    builds on it."""
    integration = integration_services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        sync_interval_minutes=60,
    )
    integration.secret = webhooks.regenerate_webhook_secret(integration=integration)
    run = SyncRun.objects.create(workspace=workspace, integration=integration)
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(1, 4)]
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    feedback, _ = record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    record_feedback(eval_set=eval_set, trace=traces[1], user=owner, rating="negative")
    eval = make_eval(eval_set, version=1)
    record(eval, traces[0], True)
    from iofold.pipeline import ingest_traces
    from traces.models import Conversation

    turns = [{**trace_data(n), "id": f"turn-{n}", "session_id": "chat-1"} for n in (7, 8)]
    ingest_traces(workspace=workspace, source="api", traces=turns)
    conversation = Conversation.objects.for_workspace(workspace).get()
    from traces.models import DeletionRun

    deletion = DeletionRun.objects.create(
        workspace=workspace, kind=DeletionRun.Kind.TRACES, name="1 trace", status="succeeded"
    )
    return World(
        workspace, integration, run, traces[0], eval_set, feedback, eval, conversation, deletion
    )


@pytest.fixture
def owner_client(owner, workspace) -> APIClient:
    client = APIClient(headers={"X-Workspace": workspace.slug})
    client.force_login(owner)
    client.raise_request_exception = False  # an exception is a 500 answer, to be reported
    return client


# --- pages and errors ---------------------------------------------------------------


def _path_ids(path: str, world: World) -> str:
    """Fill a schema path's ``{id}``-style parameters with the world's objects."""
    owners = {
        "/api/v1/eval-sets/": world.eval_set.pk,
        "/api/v1/evals/": world.eval.pk,
        "/api/v1/feedback/": world.feedback.pk,
        "/api/v1/integrations/": world.integration.pk,
        "/api/v1/sync-runs/": world.run.pk,
        "/api/v1/traces/": world.trace.pk,
        "/api/v1/generations/": world.eval.pk,
        "/api/v1/eval-runs/": world.run.pk,
        "/api/v1/conversations/": world.conversation.pk,
        "/api/v1/deletions/": world.deletion.pk,
    }
    if "{" not in path:
        return path
    prefix = next((p for p in owners if path.startswith(p)), None)
    assert prefix is not None, f"the fuzz does not know which object {path} names: add it"
    path = path.replace("{trace_pk}", str(world.trace.pk))
    return path.replace("{id}", str(owners[prefix])).replace("{pk}", str(owners[prefix]))


def test_every_list_endpoint_has_a_max_limit(owner_client, world):
    assert LIST_OPERATIONS, "no paginated list in the schema?"
    answers = {}
    for path in LIST_OPERATIONS:
        url = _path_ids(path, world)
        huge = owner_client.get(url, {"limit": "9" * 30})
        far = owner_client.get(url, {"limit": "9" * 30, "offset": "9" * 30})
        answers[path] = (huge.status_code, far.status_code)
        if huge.status_code == 200:
            assert len(huge.json()["results"]) <= 200

    assert answers == dict.fromkeys(LIST_OPERATIONS, (200, 200))


MISSING = 987_654_321


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("get", "/api/v1/deletions/{missing}/", "Deletion run not found."),
        ("get", "/api/v1/eval-sets/{missing}/", "Eval set not found."),
        ("get", "/api/v1/eval-sets/{missing}/versions/", "Eval set not found."),
        ("get", "/api/v1/traces/{missing}/", "Trace not found."),
        ("get", "/api/v1/evals/{missing}/", "Eval not found."),
        ("get", "/api/v1/eval-runs/{missing}/", "Eval run not found."),
        ("get", "/api/v1/integrations/{missing}/", "Integration not found."),
        ("get", "/api/v1/evals/{eval}/traces/{missing}/", "Trace not found."),
        ("post", "/api/v1/evals/{missing}/activate/", "Eval not found."),
        ("get", "/api/v1/no-such-thing/", "Not found."),
    ],
)
def test_a_missing_object_is_a_404_saying_what_is_missing_in_plain_words(
    owner_client, world, method, path, message
):
    url = path.format(missing=MISSING, eval=world.eval.pk)

    answer = getattr(owner_client, method)(url, {}, format="json")

    # Not Django's "No DeletionRun matches the given query.": a class name means nothing
    # to a client.
    assert (answer.status_code, answer.json()) == (404, {"detail": message})


def test_a_django_validation_error_from_a_service_is_a_400():
    by_field = exception_handler(DjangoValidationError({"name": ["Too long."]}), {})
    plain = exception_handler(DjangoValidationError("Not allowed."), {})

    assert (by_field.status_code, by_field.data) == (400, {"name": ["Too long."]})
    assert (plain.status_code, plain.data) == (400, {"non_field_errors": ["Not allowed."]})


# --- the fuzz -------------------------------------------------------------------------


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in schema:
            return _resolve(schema[combined][0])
    return schema


def _plausible(schema: dict, name: str, world: World):
    """Return a value that the schema (and the world's ids) would accept for ``name``."""
    schema = _resolve(schema)
    ids = {"eval_set": world.eval_set.pk, "trace": world.trace.pk, "trace_ids": world.trace.pk}
    if name in ids and schema.get("type") == "integer":
        return ids[name]
    if "enum" in schema:
        return next((v for v in schema["enum"] if v not in (None, "")), None)
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "integer":
        return max(schema.get("minimum", 1), min(10, schema.get("maximum", 10)))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_plausible(schema.get("items", {}), name, world)]
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: _plausible(sub, key, world) for key, sub in properties.items()}
    if fmt == "date-time":
        return "2026-03-01T12:00:00Z"
    if fmt == "date":
        return "2026-03-01"
    return {
        "host": "http://127.0.0.1:9",
        "public_key": PUBLIC_KEY,
        "secret_key": SECRET_KEY,
        "code": "def eval_fn(trace):\n    return True, 'ok'\n",
    }.get(name, "fuzz")


def _request_schema(method: str, path: str) -> dict:
    body = SCHEMA["paths"][path][method].get("requestBody", {})
    return _resolve(body.get("content", {}).get("application/json", {}).get("schema", {}))


def _base_body(method: str, path: str, world: World):
    if path in ("/api/v1/traces", "/api/v1/traces/") or (method, path) == WEBHOOK:
        return trace_data(99)
    if path.endswith("/run") or path == "/api/v1/deletions/":
        return {"trace_ids": [world.trace.pk]}
    if path == "/api/v1/openai/traces/ingest":  # the Agents SDK exporter's payload
        return {
            "data": [
                {
                    "object": "trace",
                    "id": "trace_1",
                    "workflow_name": "w",
                    "group_id": None,
                    "metadata": None,
                }
            ]
        }  # "traces" or "trace_ids", not both
    body = _plausible(_request_schema(method, path), "", world)
    if path == "/api/v1/integrations/{id}/" and isinstance(body, dict):
        # The world's source is Langfuse's: the Agents SDK source's read-back key is refused
        # on it (tests/integrations/test_api.py tries those fields on their own source).
        body = {k: v for k, v in body.items() if k not in ("response_key", "response_base_url")}
    return body


def _nested(levels: int):
    value = "bottom"
    for _ in range(levels):
        value = [value]
    return value


# A JSON value in place of one field: wrong types and extremes.
FIELD_VALUES = [
    None,
    True,
    -1,
    0,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    1.5,
    "",
    " ",
    "-1",
    "1e308",
    "x" * 100_000,
    "a\ud800b",
    "a\x00b",
    "😀" * 500,
    "2026-13-45T99:99:99Z",
    "http://[::1",  # an unclosed bracket: urlsplit raises ValueError (a 500 for hosts)
    [],
    [None],
    ["x"] * 10_001,
    {},
    {"a": {"b": []}},
    _nested(500),
]
# A JSON value as one more element of a list field (ids or otherwise): the element types
# and extremes that a list's child field, or a query on the ids, must refuse with a 400.
ELEMENT_VALUES = [10**30, 2**63, -1, 0, "x", None, [1], 1.5]
DEEP = b"[" * 10_000 + b"]" * 10_000
JSON = "application/json"
# (name, content type, body): whole bodies that are broken one way or another.
RAW_BODIES = [
    ("no body", JSON, b""),
    ("empty object", JSON, b"{}"),
    ("empty array", JSON, b"[]"),
    ("null", JSON, b"null"),
    ("a huge number", JSON, b"1e308"),
    ("minus one", JSON, b"-1"),
    ("a string", JSON, b'"a string"'),
    ("array of objects", JSON, b"[{}, {}]"),
    ("nested 10,000 deep", JSON, DEEP),
    ("object nested 10,000 deep", JSON, b'{"a": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001),
    ("invalid UTF-8", JSON, b'{"name": "\xff\xfe"}'),
    ("not JSON at all", JSON, b"\xff\xfe\x00garbage"),
    ("lone surrogate", JSON, b'{"name": "a\\ud800b", "criteria": "\\udfff"}'),
    ("NUL", JSON, b'{"name": "a\\u0000b"}'),
    ("NaN and Infinity", JSON, b'{"limit": NaN, "value": Infinity}'),
    ("truncated", JSON, b'{"name": "x'),
    ("a megabyte string", JSON, b'"' + b"x" * 1_000_000 + b'"'),
    ("UTF-16 declared", "application/json; charset=utf-16", b'{"name": "x"}'),
    ("unknown charset", "application/json; charset=klingon", b'{"name": "x"}'),
    ("plain text", "text/plain", b"name=x"),
    ("XML", "application/xml", b"<name>x</name>"),
    ("form with invalid UTF-8", "application/x-www-form-urlencoded", b"name=%ff%fe&x=\xff"),
    ("form with a surrogate", "application/x-www-form-urlencoded", b"name=%ED%A0%80"),
    ("multipart without boundary", "multipart/form-data", b"--x\r\nnope"),
    ("multipart garbage", "multipart/form-data; boundary=zz", b"--zz\r\n\xff\r\n--zz--"),
    ("no content type", "", b'{"name": "x"}'),
]


def _send(client: APIClient, method: str, url: str, body: bytes, content_type: str):
    return client.generic(method.upper(), url, data=body, content_type=content_type)


def _requests(method: str, path: str, world: World):
    """Yield (what, url, body, content type) for one operation."""
    url = _path_ids(path, world)
    base = _base_body(method, path, world)
    # First, while every object still exists (the next request may delete it).
    yield "the plausible body", url, json.dumps(base).encode(), JSON
    for name, content_type, body in RAW_BODIES:
        yield name, url, body, content_type
    yield "an array instead of the object", url, json.dumps([base]).encode(), JSON
    for wrong_id in ("0", "9" * 30):
        if "{" in path:
            bad_url = _path_ids(path.replace("{id}", wrong_id), world)
            yield f"path id {wrong_id[:5]}", bad_url, json.dumps(base).encode(), JSON
    for where, body in _one_field_changed(base):
        yield where, url, json.dumps(body).encode(), JSON


def _one_field_changed(base):
    """Yield (which field, body) with one field of ``base`` set to each of FIELD_VALUES.

    A list field also gets each of ELEMENT_VALUES appended to its plausible elements.
    Fields of a nested object, or of the first object in a list, are changed too.
    """
    if not isinstance(base, dict):
        return
    for field, original in base.items():
        for value in FIELD_VALUES:
            yield f"{field}={json.dumps(value)[:30]}", {**base, field: value}
        if isinstance(original, list):
            for element in ELEMENT_VALUES:
                yield f"{field}=[..., {json.dumps(element)}]", {**base, field: [*original, element]}
        if isinstance(original, list) and original and isinstance(original[0], dict):
            for where, first in _one_field_changed(original[0]):
                yield f"{field}[0].{where}", {**base, field: [first, *original[1:]]}
        elif isinstance(original, dict):
            for where, inner in _one_field_changed(original):
                yield f"{field}.{where}", {**base, field: inner}


def _signed(world: World, body: bytes) -> dict:
    now = str(int(time.time()))
    signature = webhooks.sign(secret=world.integration.secret, timestamp=now, body=body)
    return {"HTTP_X_IOFOLD_TIMESTAMP": now, "HTTP_X_IOFOLD_SIGNATURE": signature}


def _fuzz(client: APIClient, method: str, path: str, world: World) -> tuple[int, int, list[str]]:
    """Send every request for one operation; return the count, the plausible body's status
    and the 5xx answers."""
    sent, plausible, failures = 0, None, []
    for what, url, body, content_type in _requests(method, path, world):
        if (method, path) == WEBHOOK:
            client.credentials(**_signed(world, body))
        response = _send(client, method, url, body, content_type)
        sent += 1
        if what == "the plausible body":
            plausible = response.status_code
        if response.status_code >= 500:
            failures.append(f"{what}: {response.status_code} {response.content[:200]!r}")
    return sent, plausible, failures


@pytest.mark.parametrize(("method", "path"), [*WRITE_OPERATIONS, WEBHOOK])
def test_no_write_endpoint_answers_a_5xx(owner_client, world, method, path):
    sent, plausible, failures = _fuzz(owner_client, method, path, world)

    shown = "\n".join(failures[:20])
    assert not failures, f"{method.upper()} {path}: {len(failures)} of {sent} were 5xx:\n{shown}"
    # The world is complete: a plausible request gets through to the logic.
    expected = 400 if (method, path) in REFUSED_WHEN_PLAUSIBLE else range(200, 300)
    assert plausible in expected if isinstance(expected, range) else plausible == expected


def test_the_fuzz_covers_every_write_endpoint_of_the_schema():
    """New write endpoints join the fuzz by being in the schema; a sanity floor."""
    assert len(WRITE_OPERATIONS) >= 21
    assert ("post", "/api/v1/traces") in WRITE_OPERATIONS
    assert reverse("api-integration-webhook", args=[1]) == "/api/v1/integrations/1/webhook"


# --- the read fuzz ----------------------------------------------------------------

GET_OPERATIONS = sorted(path for path, operations in SCHEMA["paths"].items() if "get" in operations)
# Read by pagination, search or ordering somewhere, whether or not an operation documents them;
# ?workspace= names the workspace of every scoped view (sent without the X-Workspace header).
COMMON_PARAMS = ("limit", "offset", "page", "page_size", "cursor", "ordering", "q", "workspace")
QUERY_VALUES = [
    str(10**30),
    str(2**63),
    "-1",
    "0",
    "abc",
    "",
    "9" * 20_000,  # long, and past int()'s 4,300 digits
    "\x00",
    "1,2",
    "\u00e9\u202e\U0001f600",
    ["1", "abc"],  # the parameter twice
    "9999-12-31",  # the last day a date holds: a filter "to" it added a day (a 500)
]


def _query_params(path: str) -> list[str]:
    documented = [
        p["name"] for p in SCHEMA["paths"][path]["get"].get("parameters", []) if p["in"] == "query"
    ]
    return sorted({*documented, *COMMON_PARAMS})


def _read_requests(path: str, world: World, other: World | None):
    """Yield (what, url, query) for one GET operation: each query parameter set to each of
    QUERY_VALUES, then each path id wrong (0, 30 digits, another workspace's object)."""
    url = _path_ids(path, world)
    for name in _query_params(path):
        for value in QUERY_VALUES:
            yield f"?{name}={str(value)[:20]!r}", url, {name: value}
    if other is not None:
        for what, wrong in (("0", "0"), ("30 digits", "9" * 30)):
            for param in ("{id}", "{trace_pk}"):
                if param in path:
                    yield f"{param} {what}", _path_ids(path.replace(param, wrong), world), {}
        yield "another workspace's object", _path_ids(path, other), {}


@pytest.mark.parametrize("path", GET_OPERATIONS)
def test_no_read_endpoint_answers_a_5xx(owner_client, world, other_workspace, outsider, path):
    other = make_world(other_workspace, outsider) if "{" in path else None
    answers = {
        what: owner_client.get(
            url, query, **({"HTTP_X_WORKSPACE": ""} if "workspace" in query else {})
        )
        for what, url, query in _read_requests(path, world, other)
    }

    failures = [
        f"{what}: {r.status_code} {r.content[:200]!r}"
        for what, r in answers.items()
        if r.status_code >= 500
    ]
    assert not failures, f"GET {path}: {len(failures)} of {len(answers)} were 5xx:\n" + "\n".join(
        failures[:20]
    )
    if other is not None:  # another workspace's object is not found, not shown
        assert answers["another workspace's object"].status_code == 404
    leaks = [what for what, r in answers.items() if b"matches the given query" in r.content]
    assert not leaks, f"GET {path}: a 404 names a model class: {leaks}"


def _api_urls(patterns=None, prefix=""):
    """Yield (schema-style path, view) for every URL of the API."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _api_urls(pattern.url_patterns, route)
        elif route.startswith("api/v1/"):
            path = "/" + route.replace("<int:pk>", "{id}").replace("<int:trace_pk>", "{trace_pk}")
            yield path, pattern.callback


def test_the_read_fuzz_covers_every_get_endpoint_of_the_schema():
    """New read endpoints join the fuzz by being in the schema; every API view that answers
    a GET is there (none is left out of the schema, so out of the fuzz)."""
    readable = {
        path
        for path, view in _api_urls()
        if "get" in getattr(getattr(view, "cls", None), "http_method_names", ())
        and hasattr(view.cls, "get")
    }

    assert readable == set(GET_OPERATIONS)
    assert len(GET_OPERATIONS) >= 29
    assert {"/api/v1/traces/", "/api/v1/eval-sets/{id}/matrix/"} <= set(GET_OPERATIONS)
    assert {"eval_set", "trace", "limit", "ordering"} <= set(_query_params("/api/v1/feedback/"))


# --- ids out of range ---------------------------------------------------------------


def _id_request(case: str, world: World, bad_id: int) -> tuple[str, str, dict | None, str]:
    """Return (method, url, body, field) for one API input that names objects by id."""
    sets, good = f"/api/v1/eval-sets/{world.eval_set.pk}", world.trace.pk
    label = {"eval_set": world.eval_set.pk, "trace": good, "rating": "positive"}
    return {
        "new set's traces": ("post", "/api/v1/eval-sets/", {"name": "n", "trace_ids": [bad_id]}),
        "traces added": ("post", f"{sets}/traces/", {"trace_ids": [good, bad_id]}),
        "saved filter": (
            "post",
            "/api/v1/eval-sets/",
            {"name": "n", "source_kind": "filter", "saved_filter": {"integration": bad_id}},
        ),
        "label's trace": ("post", "/api/v1/feedback/", {**label, "trace": bad_id}),
        "label's set": ("post", "/api/v1/feedback/", {**label, "eval_set": bad_id}),
        "conversation label's set": (
            "post",
            f"/api/v1/conversations/{world.conversation.pk}/labels/",
            {"eval_set": bad_id, "rating": "positive"},
        ),
        "run's traces": (
            "post",
            f"/api/v1/evals/{world.eval.pk}/run",
            {"trace_ids": [good, bad_id]},
        ),
        "matrix versions": ("get", f"{sets}/matrix/?v={bad_id}", None),
    }[case]


ID_FIELDS = {
    "new set's traces": "trace_ids",
    "traces added": "trace_ids",
    "saved filter": "saved_filter",
    "label's trace": "trace",
    "label's set": "eval_set",
    "conversation label's set": "eval_set",
    "run's traces": "trace_ids",
    "matrix versions": "v",
}


@pytest.mark.parametrize("bad_id", [10**30, 2**63, 0, -1])
@pytest.mark.parametrize("case", ID_FIELDS)
def test_an_id_out_of_range_is_a_400_naming_its_field(owner_client, world, case, bad_id):
    """An id no row can have is refused where it arrives, for the field that holds it,
    rather than failing in the database (SQLite: OverflowError) or reading as "not found"."""
    method, url, body = _id_request(case, world, bad_id)

    if method == "get":
        response = owner_client.get(url)
    else:
        response = owner_client.generic(method.upper(), url, json.dumps(body), JSON)

    assert response.status_code == 400, response.content[:300]
    assert ID_FIELDS[case] in response.json()


@pytest.mark.parametrize("bad_id", ["9" * 30, "0", "-1", "abc"])
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/v1/feedback/", "eval_set"),
        ("/api/v1/feedback/", "trace"),
        ("/api/v1/evals/", "eval_set"),
    ],
)
def test_a_list_filtered_by_an_id_out_of_range_is_a_400_naming_it(
    owner_client, world, path, param, bad_id
):
    """A foreign key filter (``eval_set_id=``) past 64 bits failed in SQLite: a 500."""
    response = owner_client.get(path, {param: bad_id})

    assert response.status_code == 400
    assert param in response.json()


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("integration", "9" * 30),  # past 64 bits it was a 500 on SQLite
        ("integration", "langfuse"),
        ("date_from", "2026-13-01"),
        ("date_to", "yesterday"),
        ("has_error", "maybe"),
        ("label", "good"),
        ("cursor", "not-a-cursor"),
        ("limit", "ten"),
    ],
)
def test_a_trace_list_filter_it_cannot_read_is_a_400_naming_it(owner_client, world, param, value):
    """Dropped, it listed every trace: a script filtering by a mistyped date got them all."""
    response = owner_client.get("/api/v1/traces/", {param: value, "name": "kept"})

    assert response.status_code == 400
    assert list(response.json()) == [param]


def test_a_list_to_the_last_day_a_date_holds_keeps_every_trace(owner_client, world):
    """``date_to=9999-12-31`` (the matrix's ``to``) added a day to find where the filter
    ends: OverflowError, a 500 on the API and the pages."""
    traces = owner_client.get("/api/v1/traces/", {"date_to": "9999-12-31"})
    matrix = owner_client.get(
        f"/api/v1/eval-sets/{world.eval_set.pk}/matrix/", {"to": "9999-12-31"}
    )

    assert (traces.status_code, matrix.status_code) == (200, 200)
    assert len(traces.json()["results"]) == Trace.objects.for_workspace(world.workspace).count()
    assert matrix.json()["count"] == 2  # the eval set's labelled traces, all of them


@pytest.mark.parametrize(
    "position",
    [
        "0001-01-01T00:00:00+14:00|1",  # before year 1 in UTC: OverflowError in SQLite
        "9999-12-31T23:59:59-14:00|1",  # past year 9999 in UTC
        f"2026-03-01T12:00:00+00:00|{2**63}",  # an id no row has
        "2026-03-01T12:00:00+00:00|0",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/traces/", "/api/v1/conversations/"])
def test_a_cursor_no_list_returned_is_a_400(owner_client, world, path, position):
    cursor = base64.urlsafe_b64encode(position.encode()).decode()

    response = owner_client.get(path, {"cursor": cursor})
    page = owner_client.get(f"/w/{world.workspace.slug}/traces/", {"cursor": cursor})

    assert response.status_code == 400
    assert list(response.json()) == ["cursor"]
    assert page.status_code == 200  # the page starts again from the first traces


def test_a_trace_list_filter_that_reads_still_filters(owner_client, world):
    response = owner_client.get("/api/v1/traces/", {"date_from": "2000-01-01", "label": "labelled"})

    assert response.status_code == 200
    labelled = Trace.objects.for_workspace(world.workspace).labelled().count()
    assert 0 < len(response.json()["results"]) == labelled


def test_a_date_with_spaces_around_it_filters_as_that_date(owner_client, world):
    """``?date_from=+9999-12-31`` (a plus is a space in a query string) answered 400
    "'9999-12-31' is not a date (YYYY-MM-DD)": the message read the date, the filter not."""
    response = owner_client.get("/api/v1/traces/?date_from=+9999-12-31&date_to=2026-03-01%0A")

    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


@pytest.mark.parametrize("status", ["\x00", "activ"])
def test_an_eval_list_filtered_by_no_status_is_a_400_naming_it(owner_client, world, status):
    """A NUL in ``?status=`` reached the query and failed in PostgreSQL: a 500."""
    response = owner_client.get("/api/v1/evals/", {"status": status})

    assert response.status_code == 400
    assert "draft" in response.json()["status"][0]


@pytest.mark.parametrize("slug", ["\x00", "a b", "é"])
def test_a_workspace_named_by_no_slug_is_a_400_naming_it(owner_client, world, slug):
    """``?workspace=`` with a NUL reached the membership query: a 500 in PostgreSQL."""
    response = owner_client.get("/api/v1/traces/", {"workspace": slug}, HTTP_X_WORKSPACE="")

    assert response.status_code == 400
    assert response.json() == {"workspace": ["Not a workspace slug."]}


# --- one error shape, one page vocabulary -------------------------------------------


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/traces/", {"limit": "ten"}),
        ("/api/v1/traces/", {"cursor": "not-a-cursor", "date_from": "2026-13-01"}),
        ("/api/v1/conversations/", {"state": "closed"}),
        ("/api/v1/traces/{id}/", {"steps_offset": "-1"}),
        ("/api/v1/feedback/", {"rating": "good"}),
        ("/api/v1/evals/", {"limit": "ten"}),
    ],
)
def test_every_field_error_is_a_list_of_messages(owner_client, world, path, query):
    """The documented shape is ``{"<field>": ["..."]}``; the cursor-paged lists and the
    detail windows answered ``{"limit": "..."}``, a string where a client reads a list (and
    iterated it character by character)."""
    response = owner_client.get(_path_ids(path, world), query)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == set(query)
    assert all(
        isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        for messages in body.values()
    ), body


def _documents(path: str, param: str) -> bool:
    return any(p["name"] == param for p in SCHEMA["paths"][path]["get"]["parameters"])


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        (path, param, value)
        for path in LIST_OPERATIONS
        for param, value in [("limit", "-5"), ("limit", "0"), ("limit", "ten"), ("offset", "-1")]
        if _documents(path, param)
    ],
)
def test_a_page_parameter_that_does_not_read_is_a_400_naming_it(
    owner_client, world, path, param, value
):
    """``?limit=ten`` or ``?offset=-1`` on the limit/offset lists read as the first 50 rows
    (a 200), where the cursor-paged lists refuse the same ``?limit=``: a script's typo went
    unnoticed on one list and not the next."""
    response = owner_client.get(_path_ids(path, world), {param: value})

    assert response.status_code == 400, response.content[:200]
    assert list(response.json()) == [param]


def _creates(world: World) -> dict[str, tuple[str, dict]]:
    """(url, body) of each API request that creates something, by what it creates."""
    code = "def eval_fn(trace):\n    return False, 'edited'\n"
    return {
        "eval set": ("/api/v1/eval-sets/", {"name": "New set", "criteria": "c"}),
        "integration": (
            "/api/v1/integrations/",
            {"name": "Other", "host": "http://127.0.0.1:9"}
            | {"public_key": PUBLIC_KEY, "secret_key": SECRET_KEY},
        ),
        "label": (
            "/api/v1/feedback/",
            {"eval_set": world.eval_set.pk, "trace": world.trace.pk, "rating": "negative"},
        ),
        "eval version": (f"/api/v1/evals/{world.eval.pk}/edit/", {"code": code}),
        "OTLP source": ("/api/v1/integrations/otlp/", {}),
        "Agents SDK source": ("/api/v1/integrations/openai-agents/", {}),
    }


@pytest.mark.parametrize(
    "what", ["eval set", "integration", "label", "eval version", "OTLP source", "Agents SDK source"]
)
def test_a_201_says_where_the_new_object_is(owner_client, world, admin_user, what):
    """A 201 carried no ``Location``: a client had to know each resource's URL pattern to
    read back what it had just created. (The label is the admin's own, so new.)"""
    owner_client.force_login(admin_user)
    url, body = _creates(world)[what]

    created = owner_client.post(url, body, format="json")

    assert created.status_code == 201, created.content[:300]
    location = created["Location"]
    read = owner_client.get(location)
    assert read.status_code == 200
    made = created.json()
    made = made.get("eval", made)  # an edit answers the new version and its test run
    assert read.json().get("id", read.json().get("integration")) == made.get(
        "id", made.get("integration")
    )


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["post", "patch", "delete", "get"])
def test_an_api_address_without_its_slash_sends_the_request_on_as_it_was(
    owner_client, world, settings, method, debug
):
    """``POST /api/v1/eval-sets`` got Django's 301, which clients follow as a GET: the
    script read the list (200) and nothing was created; with DEBUG it was a 500. A 308
    keeps the method and the body, and says in JSON where the address is."""
    settings.DEBUG = debug
    path = {
        "post": "/api/v1/eval-sets",
        "patch": f"/api/v1/eval-sets/{world.eval_set.pk}",
        "delete": f"/api/v1/feedback/{world.feedback.pk}",
        "get": "/api/v1/evals",
    }[method]

    response = owner_client.generic(method.upper(), f"{path}?x=1", "{}", JSON)

    assert response.status_code == 308, response.content[:200]
    assert response["Location"] == f"{path}/?x=1"
    assert f"{path}/" in response.json()["detail"]
    assert Feedback.objects.filter(pk=world.feedback.pk).exists()


@pytest.mark.parametrize(
    ("method", "what", "body"),
    [
        ("patch", "eval set", {"criterion": "Typed for criteria."}),
        ("post", "eval sets", {"name": "n", "criteria": "c", "target_label": 20}),
        ("patch", "label", {"ratting": "negative"}),
        ("post", "run", {"trace_ids": [1], "wiat": True}),
    ],
)
def test_a_field_the_request_does_not_take_is_a_400_naming_it(
    owner_client, world, method, what, body
):
    """DRF drops fields it does not know: a PATCH with ``criterion`` for ``criteria``
    answered 200 and changed nothing, and a create with ``target_label`` quietly took the
    default of 10."""
    url = {
        "eval set": f"/api/v1/eval-sets/{world.eval_set.pk}/",
        "eval sets": "/api/v1/eval-sets/",
        "label": f"/api/v1/feedback/{world.feedback.pk}/",
        "run": f"/api/v1/evals/{world.eval.pk}/run",
    }[what]
    before = EvalSet.objects.count(), Feedback.objects.get(pk=world.feedback.pk).rating

    response = owner_client.generic(method.upper(), url, json.dumps(body), JSON)

    assert response.status_code == 400, response.content[:300]
    unknown = next(name for name in body if name not in ("name", "criteria", "trace_ids"))
    assert list(response.json()) == [unknown]
    assert (EvalSet.objects.count(), Feedback.objects.get(pk=world.feedback.pk).rating) == before
