"""The fake Langfuse server answers like the real one: validated against the OpenAPI spec."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource

from tests.fakes.langfuse_server import running

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "langfuse" / "openapi.yml"
ALL_FIELDS = "core,basic,time,io,metadata,model,usage,prompt,metrics,trace_context"

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason="shared Langfuse spec not available")


@pytest.fixture(scope="module")
def spec():
    spec = yaml.safe_load(SPEC_PATH.read_text())
    observation = spec["components"]["schemas"]["ObservationV2"]["properties"]
    # SOURCE.md gap 2: the wire key is `model`, not `providedModelName`.
    observation["model"] = observation.pop("providedModelName")
    # SOURCE.md gap 1: SDK 5 batch replies (202/207), absent from this spec snapshot.
    spec["components"]["schemas"]["CreateScoreBatchResponse"] = {
        "type": "object",
        "properties": {"message": {"type": "string", "enum": ["Accepted"]}},
        "required": ["message"],
    }
    spec["components"]["schemas"]["CreateScoreBatchResults"] = {
        "type": "object",
        "properties": {
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                },
            },
        },
        "required": ["accepted", "rejected", "errors"],
    }
    return spec


def validate(spec, name: str, instance) -> None:
    registry = Registry().with_resource("urn:spec", Resource.opaque(spec))
    OAS30Validator({"$ref": f"urn:spec#/components/schemas/{name}"}, registry=registry).validate(
        instance
    )


def response_schema(spec, path: str, method: str, status: str) -> str:
    ref = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"][
        "$ref"
    ]
    return ref.rsplit("/", 1)[-1]


@pytest.fixture
def fake():
    with running(traces=12, observations=6, public_key="pk-lf-spec") as server:
        yield server


def get(fake, path, **params):
    return httpx.get(fake.url + path, params=params, auth=(fake.public_key, fake.secret_key))


def test_health_and_projects_match_the_spec(fake, spec):
    health = httpx.get(fake.url + "/api/public/health")  # no auth needed
    validate(spec, response_schema(spec, "/api/public/health", "get", "200"), health.json())
    projects = get(fake, "/api/public/projects")
    validate(spec, response_schema(spec, "/api/public/projects", "get", "200"), projects.json())


def test_observation_pages_match_the_spec(fake, spec):
    name = response_schema(spec, "/api/public/v2/observations", "get", "200")
    cursor, rows = None, []
    while True:
        params = {"fields": ALL_FIELDS, "limit": 25} | ({"cursor": cursor} if cursor else {})
        body = get(fake, "/api/public/v2/observations", **params).json()
        validate(spec, name, body)
        rows += body["data"]
        cursor = body["meta"].get("cursor")
        if not cursor:
            break
        assert set(json.loads(base64.b64decode(cursor))) == {
            "lastStartTimeTo",
            "lastTraceId",
            "lastId",
        }
    assert len(rows) == 12 * 6 and len({r["id"] for r in rows}) == 72
    keys = [(r["startTime"], r["traceId"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)  # newest first
    assert {r["type"] for r in rows} >= {"AGENT", "GENERATION", "TOOL", "RETRIEVER", "SPAN"}
    assert all(isinstance(r["input"], (str, type(None))) for r in rows)  # io is raw strings


def test_field_groups_leave_other_keys_absent(fake):
    row = get(fake, "/api/public/v2/observations", fields="core", limit=1).json()["data"][0]
    assert set(row) == {
        "id",
        "traceId",
        "startTime",
        "endTime",
        "projectId",
        "parentObservationId",
        "type",
        "modelId",
        "inputPrice",
        "outputPrice",
        "totalPrice",
    }
    assert row["modelId"] is None


def test_observation_request_errors(fake):
    assert get(fake, "/api/public/v2/observations", limit=1001).status_code == 400
    assert get(fake, "/api/public/v2/observations", cursor="!!").status_code == 400
    assert httpx.get(fake.url + "/api/public/v2/observations").status_code == 401


def test_score_replies_match_the_sdk_shapes(fake, spec):
    auth = (fake.public_key, fake.secret_key)
    ok = httpx.post(
        fake.url + "/api/public/scores",
        json=[{"id": "a", "traceId": "t1", "name": "n", "value": 1, "dataType": "BOOLEAN"}],
        auth=auth,
    )
    assert ok.status_code == 202
    validate(spec, "CreateScoreBatchResponse", ok.json())
    mixed = httpx.post(
        fake.url + "/api/public/scores",
        json=[
            {"id": "b", "traceId": "t1", "name": "n", "value": 3, "dataType": "BOOLEAN"},
            {"id": "c", "traceId": "t1", "value": 1},
        ],
        auth=auth,
    )
    assert mixed.status_code == 207
    validate(spec, "CreateScoreBatchResults", mixed.json())
    assert mixed.json()["rejected"] == 2
    single = httpx.post(
        fake.url + "/api/public/scores",
        json={"id": "d", "traceId": "t1", "name": "n", "value": 0.5},
        auth=auth,
    )
    assert single.status_code == 200
    validate(spec, response_schema(spec, "/api/public/scores", "post", "200"), single.json())
    assert set(fake.scores) == {"a", "d"}


def test_rate_limit_reply_has_the_documented_headers(fake):
    fake.fail_next(429, 1, retry_after="3")
    reply = get(fake, "/api/public/projects")
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "3"
    assert (
        reply.json()["code"] == "rate_limited" and reply.json()["details"]["retryAfterSeconds"] == 3
    )
    assert get(fake, "/api/public/projects").status_code == 200


def test_generation_is_deterministic_and_includes_failures():
    with (
        running(traces=50, observations=5, public_key="pk-a") as a,
        running(traces=50, observations=5, public_key="pk-b") as b,
    ):
        rows_a = [a.trace_rows(a.trace_id(i)) for i in range(50)]
        assert rows_a == [b.trace_rows(b.trace_id(i)) for i in range(50)]
    errors = [r for rows in rows_a for r in rows if r["level"] == "ERROR"]
    assert 0 < len(errors) < 50 and all(r["type"] == "TOOL" and r["statusMessage"] for r in errors)
