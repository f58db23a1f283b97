"""The OpenAI and Anthropic providers, driven through the real SDKs at a loopback fake."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest

from evals.generation.code_extraction import CodeExtractionError, extract_code
from evals.generation.pricing import DEFAULT_PRICES, Price, cost_usd, parse_price_table
from evals.generation.providers import Provider, ProviderError, get_provider
from tests.fakes.llm_server import FakeLLMServer, Reply

API_KEY = "sk-test-9f8e7d6c5b4a39281706"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
GOOD_CODE = 'def eval_fn(trace: dict) -> tuple[bool, str]:\n    return True, "ok"'
USER = [{"role": "user", "content": "Write the eval."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def make(name: str, server: FakeLLMServer, **options) -> Provider:
    base_url = server.openai_base_url if name == "openai" else server.anthropic_base_url
    return get_provider(name, api_key=API_KEY, model=MODELS[name], base_url=base_url, **options)


both = pytest.mark.parametrize("name", ["openai", "anthropic"])


@both
def test_good_code_comes_back_with_usage(server, name):
    server.push_text(f"```python\n{GOOD_CODE}\n```", input_tokens=1234, output_tokens=56)
    completion = make(name, server).complete(system="You write evals.", messages=USER)
    assert extract_code(completion.text) == GOOD_CODE
    assert (completion.input_tokens, completion.output_tokens) == (1234, 56)
    assert completion.model == MODELS[name]
    assert not completion.usage_estimated


@both
def test_system_prompt_and_messages_reach_the_server(server, name):
    server.push_text(GOOD_CODE)
    make(name, server).complete(system="SYSTEM-TEXT", messages=USER)
    request = server.requests[0]
    assert request.api == name
    assert request.system == "SYSTEM-TEXT"
    assert request.messages == USER
    assert request.body["model"] == MODELS[name]


@both
def test_code_is_extracted_from_a_chatty_answer(server, name):
    answer = (
        "Sure! First a helper idea:\n\n"
        "```python\ndef looks_polite(text):\n    return 'please' in text\n```\n"
        f"Here is the final version:\n\n```python\nimport re\n\n{GOOD_CODE}\n```\n\n"
        "Usage:\n```python\nprint(eval_fn({}))\n```\nLet me know if you need changes."
    )
    server.push_text(answer)
    completion = make(name, server).complete(system="s", messages=USER)
    assert extract_code(completion.text) == f"import re\n\n{GOOD_CODE}"


@both
def test_cost_follows_usage_and_the_price_table(server, name):
    server.push_text(GOOD_CODE, input_tokens=2_000_000, output_tokens=100_000)
    completion = make(name, server).complete(system="s", messages=USER)
    price = DEFAULT_PRICES[MODELS[name]]
    expected = 2 * price.input_per_million + Decimal("0.1") * price.output_per_million
    assert cost_usd(completion.model, completion.input_tokens, completion.output_tokens) == expected


@both
def test_server_usage_scales_with_the_prompt(server, name):
    server.push_text(GOOD_CODE)
    server.push_text(GOOD_CODE)
    provider = make(name, server)
    short = provider.complete(system="s", messages=USER)
    long = provider.complete(system="s" * 8000, messages=USER)
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens >= 2000
    assert short.output_tokens > 0


def test_openai_without_usage_estimates_tokens(server):
    server.push_text(GOOD_CODE, include_usage=False)
    completion = make("openai", server).complete(system="x" * 4000, messages=USER)
    assert completion.usage_estimated
    assert completion.input_tokens >= 1000
    assert completion.output_tokens > 0


@both
@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_then_reported_as_not_permanent(server, name, status):
    server.push_error(status, times=3, headers={"retry-after": "0"} if status == 429 else None)
    with pytest.raises(ProviderError) as info:
        make(name, server, max_retries=2).complete(system="s", messages=USER)
    assert info.value.permanent is False
    assert info.value.status_code == status
    assert len(server.requests) == 3  # one call plus two SDK retries


@both
def test_a_retry_that_succeeds_returns_the_answer(server, name):
    server.push_error(429, message="slow down")
    server.push_text(GOOD_CODE)
    completion = make(name, server, max_retries=2).complete(system="s", messages=USER)
    assert completion.text == GOOD_CODE
    assert len(server.requests) == 2


@both
@pytest.mark.parametrize(
    ("headers", "wait"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "250"}, 0.25), ({}, None)],
)
def test_the_wait_a_rate_limit_asks_for_is_read(server, name, headers, wait):
    server.push_error(429, headers=headers, retry_after_ms=None)
    with pytest.raises(ProviderError) as info:
        make(name, server, max_retries=0).complete(system="s", messages=USER)
    assert info.value.retry_after == wait
    assert info.value.message.startswith(f"{name}: rate limited")


def test_an_overloaded_anthropic_says_so(server):
    server.push_error(529, message="Overloaded", times=1)
    with pytest.raises(ProviderError) as info:
        make("anthropic", server, max_retries=0).complete(system="s", messages=USER)
    assert info.value.message == "anthropic: overloaded (HTTP 529): Overloaded"
    assert info.value.permanent is False


@both
@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_permanent_and_not_retried(server, name, status):
    server.push_error(status, times=3)
    with pytest.raises(ProviderError) as info:
        make(name, server, max_retries=2).complete(system="s", messages=USER)
    assert info.value.permanent is True
    assert info.value.status_code == status
    assert len(server.requests) == 1


@both
@pytest.mark.parametrize("body", [b"{not json", b"<html>Bad gateway</html>"])
def test_an_answer_that_is_not_json_is_a_provider_error_not_a_crash(server, name, body):
    server.push(Reply(raw=body))
    with pytest.raises(ProviderError) as caught:
        make(name, server, max_retries=0).complete(system="s", messages=USER)
    assert caught.value.message == f"{name}: the answer was not JSON"
    assert not caught.value.permanent  # a proxy's hiccup: a later attempt may be answered


@both
def test_api_key_never_appears_in_the_error(server, name):
    server.push_error(401, message="Incorrect API key provided: {api_key}. Check your key.")
    with pytest.raises(ProviderError) as info:
        make(name, server).complete(system="s", messages=USER)
    # The server did echo the key; the provider must scrub it.
    assert server.requests[0].headers.get("authorization", "").endswith(API_KEY) or (
        server.requests[0].headers.get("x-api-key") == API_KEY
    )
    error = info.value
    assert "Incorrect API key provided" in str(error)
    for text in (str(error), repr(error), error.message):
        assert API_KEY not in text
    # Nothing holding the request headers rides along on the exception.
    assert error.__cause__ is None
    assert error.__suppress_context__


@both
def test_provider_repr_hides_the_key(server, name):
    provider = make(name, server)
    assert API_KEY not in repr(provider)
    assert API_KEY not in str(vars(provider).get("model"))


@both
def test_timeout_is_not_permanent(server, name):
    server.push_text(GOOD_CODE, delay=1.0)
    with pytest.raises(ProviderError) as info:
        make(name, server, timeout=0.2, max_retries=0).complete(system="s", messages=USER)
    assert info.value.permanent is False
    assert "timed out" in str(info.value)


@both
def test_unreachable_server_is_not_permanent(name):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    base_url = f"http://127.0.0.1:{port}/v1"
    provider = get_provider(
        name, api_key=API_KEY, model=MODELS[name], base_url=base_url, max_retries=0
    )
    with pytest.raises(ProviderError) as info:
        provider.complete(system="s", messages=USER)
    assert info.value.permanent is False
    assert API_KEY not in str(info.value)


def test_unknown_provider_is_a_permanent_error():
    with pytest.raises(ProviderError) as info:
        get_provider("nope", api_key=API_KEY, model="m")
    assert info.value.permanent is True
    assert "anthropic" in str(info.value) and "openai" in str(info.value)


def test_missing_key_is_permanent_for_anthropic_but_allowed_for_local_openai(server):
    with pytest.raises(ProviderError) as info:
        get_provider("anthropic", api_key="", model="claude-sonnet-4-5")
    assert info.value.permanent is True
    server.push_text(GOOD_CODE)
    local = get_provider("openai", api_key="", model="llama3", base_url=server.openai_base_url)
    assert local.complete(system="s", messages=USER).text == GOOD_CODE


# Code extraction --------------------------------------------------------------


def test_bare_code_is_returned_as_is():
    assert extract_code(GOOD_CODE + "\n") == GOOD_CODE


def test_bare_code_surrounded_by_prose_is_cut_out():
    answer = f"Here is the function:\n\nimport re\n\n{GOOD_CODE}\n\nThis accepts every trace."
    assert extract_code(answer) == f"import re\n\n{GOOD_CODE}"


def test_truncated_answer_with_unclosed_fence_still_yields_code():
    assert extract_code(f"```python\n{GOOD_CODE}\n") == GOOD_CODE


def test_tilde_fences_and_untagged_blocks_are_read():
    assert extract_code(f"~~~\n{GOOD_CODE}\n~~~") == GOOD_CODE


def test_answer_without_code_raises_a_message_to_feed_back():
    with pytest.raises(CodeExtractionError, match="eval_fn"):
        extract_code("I'm sorry, I can't help with that.")
    with pytest.raises(CodeExtractionError, match="eval_fn"):
        extract_code('```json\n{"a": 1}\n```\n```text\nhello\n```')


# Pricing ----------------------------------------------------------------------


def test_dated_snapshots_cost_like_their_base_model_but_other_variants_do_not():
    assert cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 0) == Decimal("0.15")
    assert cost_usd("claude-sonnet-4-5-20250929", 0, 1_000_000) == Decimal("15")
    assert cost_usd("gpt-4o-mini-unreleased", 1, 1) is None
    assert cost_usd("my-local-llama", 1000, 1000) is None


def test_price_table_is_configurable():
    table = parse_price_table({"my-local-llama": {"input": "0", "output": 0.5}})
    assert table["my-local-llama"] == Price(Decimal("0"), Decimal("0.5"))
    assert cost_usd("my-local-llama", 10, 2_000_000, table=table) == Decimal("1")
    assert cost_usd("gpt-4o", 1_000_000, 0, table=table) == Decimal("2.50")
    with pytest.raises(ValueError):
        parse_price_table({"x": {"input": "cheap", "output": "1"}})
    with pytest.raises(ValueError):
        parse_price_table({"x": {"input": "-1", "output": "1"}})
    with pytest.raises(ValueError):
        cost_usd("gpt-4o", -1, 0)
