"""The judge()/llm() an exported judge or hybrid eval brings with it.

The standalone script cannot reach iofold's runner, so it gets its own `iofold_eval`
module: the same prompt and answer parsing (evals/judging/prompting.py, copied in), sent
with the standard library to the provider the workspace uses, with the key read from the
environment. Nothing secret is written into the file.
"""

from __future__ import annotations

import inspect

from django.conf import settings

from evals.generation.provider_settings import resolve_provider
from evals.judging import prompting
from evals.models import Eval, Provider

KEY_VARIABLES = {Provider.OPENAI: "OPENAI_API_KEY", Provider.ANTHROPIC: "ANTHROPIC_API_KEY"}
DEFAULT_BASE_URLS = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.ANTHROPIC: "https://api.anthropic.com",
}

SHIM = '''
# --- judge() and llm() for this script ------------------------------------------------
# In iofold the workspace's provider answers these; here the provider named in the
# header does, with the key from the environment (never written into this file).
import json as _iofold_json
import os as _iofold_os
import sys as _iofold_sys
import types as _iofold_types
import urllib.error as _iofold_error
import urllib.request as _iofold_request

{prompting}

_IOFOLD_PROVIDER = {provider!r}
_IOFOLD_MODEL = _iofold_os.environ.get("IOFOLD_JUDGE_MODEL") or {model!r}
_IOFOLD_BASE_URL = _iofold_os.environ.get("IOFOLD_JUDGE_BASE_URL") or {base_url!r}
_IOFOLD_KEY_VARIABLE = {key_variable!r}
_IOFOLD_MAX_TOKENS = {max_tokens!r}
_IOFOLD_TIMEOUT = {timeout!r}


class JudgeError(Exception):
    """A judge() or llm() call that failed or gave no allowed answer."""


def _iofold_ask(system, user):
    key = _iofold_os.environ.get(_IOFOLD_KEY_VARIABLE, "")
    base = _IOFOLD_BASE_URL.rstrip("/")
    if _IOFOLD_PROVIDER == "anthropic":
        url = base + "/v1/messages"
        headers = {{"x-api-key": key, "anthropic-version": "2023-06-01"}}
        body = {{"model": _IOFOLD_MODEL, "max_tokens": _IOFOLD_MAX_TOKENS,
                "system": system, "messages": [{{"role": "user", "content": user}}]}}
    else:
        url, headers = base + "/chat/completions", {{"authorization": "Bearer " + key}}
        body = {{"model": _IOFOLD_MODEL, "temperature": 0,
                "max_completion_tokens": _IOFOLD_MAX_TOKENS,
                "messages": [{{"role": "system", "content": system}},
                             {{"role": "user", "content": user}}]}}
    headers["content-type"] = "application/json"
    request = _iofold_request.Request(url, _iofold_json.dumps(body).encode(), headers)
    try:
        with _iofold_request.urlopen(request, timeout=_IOFOLD_TIMEOUT) as response:
            answer = _iofold_json.loads(response.read())
    except (_iofold_error.URLError, OSError, ValueError) as exc:
        message = str(exc).replace(key, "[redacted]") if key else str(exc)
        raise JudgeError(f"the judge call failed: {{message}}") from None
    if _IOFOLD_PROVIDER == "anthropic":
        return "".join(block.get("text", "") for block in answer.get("content", []))
    return answer["choices"][0]["message"]["content"] or ""


def _iofold_judge(question, *, context="", choices=("yes", "no")):
    system, user = render_call("judge", question=question, context=context, choices=list(choices))
    try:
        return pick_choice(_iofold_ask(system, user), list(choices))
    except ValueError as exc:
        raise JudgeError(str(exc)) from None


def _iofold_llm(prompt):
    return _iofold_ask(*render_call("llm", prompt=prompt))


_iofold_module = _iofold_types.ModuleType("iofold_eval")
_iofold_module.judge = _iofold_judge
_iofold_module.llm = _iofold_llm
_iofold_module.JudgeError = JudgeError
_iofold_sys.modules["iofold_eval"] = _iofold_module
# --- the eval ----------------------------------------------------------------------------
'''


def judge_requirements(eval: Eval) -> list[str]:
    """Return the header lines that say which provider the exported eval needs."""
    choice = resolve_provider(workspace=eval.workspace)
    provider = choice.provider if choice.provider != Provider.OFFLINE else Provider.OPENAI
    base_url = choice.base_url or DEFAULT_BASE_URLS[provider]
    return [
        "This eval asks an LLM (judge()/llm()). It needs:",
        f"  provider {Provider(provider).label}, model {choice.model or 'gpt-4.1-mini'},",
        f"  base URL {base_url} (or set IOFOLD_JUDGE_BASE_URL),",
        f"  the API key in the environment variable {KEY_VARIABLES[provider]}.",
    ]


def judge_shim(eval: Eval) -> str:
    """Return the source that defines iofold_eval for the standalone script."""
    choice = resolve_provider(workspace=eval.workspace)
    provider = choice.provider if choice.provider != Provider.OFFLINE else Provider.OPENAI
    source = inspect.getsource(prompting)
    return SHIM.format(
        prompting=source.split('"""', 2)[2].strip(),
        provider=str(provider),
        model=choice.model if choice.provider != Provider.OFFLINE else "gpt-4.1-mini",
        base_url=choice.base_url or DEFAULT_BASE_URLS[provider],
        key_variable=KEY_VARIABLES[provider],
        max_tokens=settings.IOFOLD_JUDGE_MAX_OUTPUT_TOKENS,
        timeout=settings.IOFOLD_JUDGE_TIMEOUT_S,
    )
