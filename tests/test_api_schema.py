"""The published OpenAPI schema tells the truth about the API.

Every documented operation gets one valid request, with an API token the workspace's owner
issued, through the real WSGI application; schemathesis checks the answer against the
schema: a documented status, a body of the documented shape, the documented content type.
Then a bounded property-based pass (fixed seed, a few examples an operation) sends
generated requests: no answer is a 5xx and every answer conforms. An API URL that the
schema leaves out fails here, so a new endpoint needs its schema.
"""

import copy
from dataclasses import dataclass

import jsonschema
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings, strategies
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import sandbox
from evals.models import EvalRun, Generation
from tests.test_api import (
    SCHEMA,
    WEBHOOK,
    World,
    _api_urls,
    _base_body,
    _path_ids,
    make_world,
)
from tests.traces.factories import EvalSetFactory
from traces.models import EvalSet
from traces.services import add_traces_to_eval_set
from workspaces.models import Membership
from workspaces.services import issue_token, revoke_token

API = schemathesis.openapi.from_dict(copy.deepcopy(SCHEMA))
OPERATIONS = sorted(
    (method, path)
    for path, operations in SCHEMA["paths"].items()
    for method in operations
    if method in ("get", "post", "put", "patch", "delete")
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Not in the schema on purpose: the signed webhook authenticates by an HMAC of its body,
# not by a token or a session, so Swagger UI could not call it; docs/ describes it.
UNDOCUMENTED = {WEBHOOK}


@pytest.fixture
def app():
    """The WSGI application, in this test's database transaction.

    Django closes the connection when a request starts and ends; inside the test's
    transaction that would drop it, so (as Django's test client does) not here.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(workspace, owner) -> dict:
    _, raw = issue_token(
        workspace=workspace, name="schema", created_by=owner, role=Membership.Role.ADMIN
    )
    return {"Authorization": f"Bearer {raw}"}


@dataclass
class Seeded:
    """The workspace's world (tests/test_api.py), with what its fuzz leaves out: an eval
    run, a generation and a conversation eval set, so every path id names a real object."""

    world: World
    run: EvalRun
    generation: Generation
    conversation_set: EvalSet


@pytest.fixture
def seeded(workspace, owner) -> Seeded:
    world = make_world(workspace, owner)
    conversation_set = EvalSetFactory(
        workspace=workspace, created_by=owner, unit=EvalSet.Unit.CONVERSATION
    )
    add_traces_to_eval_set(eval_set=conversation_set, trace_ids=[world.conversation.anchor_id])
    return Seeded(
        world=world,
        run=EvalRun.objects.create(workspace=workspace, eval=world.eval, trigger="manual"),
        generation=Generation.objects.create(
            workspace=workspace, eval_set=world.eval_set, provider="offline"
        ),
        conversation_set=conversation_set,
    )


def _path_parameters(path: str, seeded: Seeded) -> dict:
    url = _path_ids(path, seeded.world)
    ids = {
        name.strip("{}"): int(value)
        for name, value in zip(path.split("/"), url.split("/"), strict=True)
        if name.startswith("{")
    }
    if path.startswith("/api/v1/eval-runs/"):
        ids["id"] = seeded.run.pk
    if path.startswith("/api/v1/generations/"):
        ids["id"] = seeded.generation.pk
    return ids


def _valid_body(method: str, path: str, seeded: Seeded):
    if path == "/api/v1/conversations/{id}/labels/":
        return {"eval_set": seeded.conversation_set.pk, "rating": "positive", "note": "ok"}
    return _base_body(method, path, seeded.world)


def _valid_case(method: str, path: str, seeded: Seeded):
    operation = API[path][method.upper()]
    kwargs = {"path_parameters": _path_parameters(path, seeded)}
    if "requestBody" in SCHEMA["paths"][path][method]:
        kwargs["body"] = _valid_body(method, path, seeded)
        kwargs["media_type"] = "application/json"
    return operation.Case(**kwargs)


def _component(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _undocumented(value, schema: dict, where: str = "") -> list[str]:
    """Name the fields of ``value`` that ``schema`` does not describe.

    JSON Schema lets an object carry properties it does not name, so the checks above miss
    a field a view answers and the schema forgot (or one it answers by mistake).
    """
    schema = _component(schema)
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            found = [_undocumented(value, option, where) for option in schema[combined]]
            return min(found, key=len)
    if "allOf" in schema:
        merged = {"type": "object", "properties": {}}
        for part in map(_component, schema["allOf"]):
            merged["properties"].update(part.get("properties", {}))
        schema = merged
    if isinstance(value, list) and "items" in schema:
        return [
            found
            for i, item in enumerate(value)
            for found in _undocumented(item, schema["items"], f"{where}[{i}]")
        ]
    if (
        not isinstance(value, dict)
        or "properties" not in schema
        or "additionalProperties" in schema
    ):
        return []
    known = schema.get("properties", {})
    return [
        found
        for key, item in value.items()
        for found in (
            _undocumented(item, known[key], f"{where}.{key}")
            if key in known
            else [where + "." + key]
        )
    ]


def _response_schema(method: str, path: str, status: int) -> dict:
    responses = SCHEMA["paths"][path][method]["responses"]
    documented = responses.get(str(status), {}).get("content", {})
    return documented.get("application/json", {}).get("schema", {})


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_a_valid_request_gets_the_documented_answer(app, bearer, seeded, method, path):
    case = _valid_case(method, path, seeded)

    response = case.call(app=app, headers=bearer)

    case.validate_response(response, checks=CHECKS, headers=bearer)
    assert response.status_code < 500
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        schema = _response_schema(method, path, response.status_code)
        assert _undocumented(response.json(), schema) == []
    if response.status_code == 400:
        # A well-formed request that the logic refuses: its answer is the operation's own,
        # documented, not only the catch-all of a body that did not validate.
        refusal = _response_schema(method, path, 400)["anyOf"][0]
        assert _undocumented(response.json(), refusal) == []
        jsonschema.validate(response.json(), {**refusal, "components": SCHEMA["components"]})


def test_every_api_url_is_in_the_schema():
    """A view under /api/v1/ without a schema fails here: it would be missing from the docs
    and from the checks above."""
    documented = {(method, path) for method, path in OPERATIONS}
    served = set()
    for path, view in _api_urls():
        cls = getattr(view, "cls", None)
        actions = getattr(view, "actions", None) or {}
        methods = (
            set(actions)
            if actions
            else {
                m
                for m in getattr(cls, "http_method_names", ("get", "post"))
                if m in ("get", "post", "put", "patch", "delete") and hasattr(cls or view, m)
            }
        )
        served |= {(method, path) for method in methods}
    assert served - UNDOCUMENTED == documented


# Few examples an operation, the same ones every run: a bounded pass, not a search.
BOUNDED = settings(
    max_examples=8,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_get_no_5xx_and_conforming_answers(app, bearer, seeded, method, path):
    """Generated bodies and query parameters, valid and not (schemathesis' positive and
    negative modes), on the seeded objects' ids."""
    ids = _path_parameters(path, seeded)

    operation = API[path][method.upper()]
    cases = strategies.one_of(
        *(operation.as_strategy(mode, path_parameters=ids) for mode in GenerationMode)
    )

    @BOUNDED
    @given(case=cases)
    def send(case):
        case.call_and_validate(app=app, headers=bearer, checks=CHECKS)

    send()


def test_a_run_with_wait_when_the_sandbox_cannot_start_is_a_documented_503(
    app, bearer, seeded, monkeypatch
):
    """Judged within the request, a transient sandbox failure is a 503 to retry."""

    def unavailable(*args, **kwargs):
        raise sandbox.SandboxUnavailable("nsjail did not start", permanent=False)

    monkeypatch.setattr(sandbox, "run", unavailable)
    path = "/api/v1/evals/{id}/run"
    case = API[path]["POST"].Case(
        path_parameters={"id": seeded.world.eval.pk},
        body={"trace_ids": [seeded.world.trace.pk], "wait": True},
        media_type="application/json",
    )

    response = case.call(app=app, headers=bearer)

    assert response.status_code == 503
    assert "sandbox could not run the eval" in response.json()["detail"]
    documented = [check for check in CHECKS if check is not not_a_server_error]
    case.validate_response(response, checks=documented, headers=bearer)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_refusals_before_the_view_are_documented(
    app, seeded, workspace, owner, viewer, method, path
):
    """No credentials, a revoked token, a viewer writing: each is a documented answer."""
    _, raw = issue_token(
        workspace=workspace, name="viewer", created_by=viewer, role=Membership.Role.VIEWER
    )
    revoked, revoked_raw = issue_token(
        workspace=workspace, name="gone", created_by=owner, role=Membership.Role.ADMIN
    )
    revoke_token(token=revoked)
    expected = {
        "none": ({}, 401),
        "revoked": ({"Authorization": f"Bearer {revoked_raw}"}, 401),
        "viewer": ({"Authorization": f"Bearer {raw}"}, 200 if method == "get" else 403),
    }
    for who, (headers, status) in expected.items():
        case = _valid_case(method, path, seeded)

        response = case.call(app=app, headers=headers)

        if status != 200:
            assert response.status_code == status, who
        case.validate_response(response, checks=CHECKS, headers=headers)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("&".join(f"f{n}=1" for n in range(1_001)), 400),  # DATA_UPLOAD_MAX_NUMBER_FIELDS
        ("name=" + "x" * 3_000_000, 413),  # DATA_UPLOAD_MAX_MEMORY_SIZE
    ],
    ids=["too many fields", "too large"],
)
def test_a_form_django_refuses_to_read_gets_a_documented_json_answer(
    app, bearer, seeded, body, status
):
    """Django refuses such a form before DRF sees it: the answer was its HTML error page."""
    case = API["/api/v1/eval-sets/"]["POST"].Case(
        body=body, media_type="application/x-www-form-urlencoded"
    )

    response = case.call(
        app=app,
        headers={**bearer, "Content-Type": "application/x-www-form-urlencoded"},
        data=body,
    )

    assert response.status_code == status
    assert response.headers["content-type"] == ["application/json"]
    case.validate_response(response, checks=CHECKS, headers=bearer)
