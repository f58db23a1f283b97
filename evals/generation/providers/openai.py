"""OpenAI chat completions, also for any OpenAI-compatible server via `base_url`."""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from evals.generation.providers.base import UNREADABLE_ANSWER, Completion, Provider, estimate_tokens
from iofold.lib import outbound

# Local OpenAI-compatible servers (vLLM, Ollama, llama.cpp) accept any key, but the
# SDK refuses to start without one.
PLACEHOLDER_KEY = "unused"


class OpenAIProvider(Provider):
    """Chat completions through the official `openai` SDK."""

    name = "openai"

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, **options: Any):
        super().__init__(api_key=api_key, model=model, base_url=base_url, **options)
        if not api_key and not base_url:
            raise self.error("no API key configured", permanent=True)
        self._client = openai.OpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            # The base URL may be the workspace's choice: connect only where it may point.
            http_client=openai.DefaultHttpxClient(transport=outbound.guarded_transport(httpx2)),
        )

    def complete(self, *, system: str, messages: list[dict[str, Any]]) -> Completion:
        """Return the model's answer to `messages` under the `system` prompt."""
        kwargs: dict[str, Any] = {}
        # Left unset by default: reasoning models count hidden tokens against this
        # cap, so a small default would cut answers off.
        if self.max_tokens is not None:
            kwargs["max_completion_tokens"] = self.max_tokens
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, *messages],
                **kwargs,
            )
        except (openai.OpenAIError, *UNREADABLE_ANSWER) as exc:
            raise self.map_sdk_error(exc) from None
        if not response.choices:
            raise self.error("the answer had no choices", permanent=False)
        choice = response.choices[0]
        text = choice.message.content or ""
        usage = response.usage
        if usage is not None:
            return Completion(
                text=text,
                input_tokens=usage.prompt_tokens or 0,
                output_tokens=usage.completion_tokens or 0,
                model=response.model or self.model,
                stop_reason=choice.finish_reason,
            )
        prompt_text = system + "".join(str(m.get("content", "")) for m in messages)
        return Completion(
            text=text,
            input_tokens=estimate_tokens(prompt_text),
            output_tokens=estimate_tokens(text),
            model=response.model or self.model,
            stop_reason=choice.finish_reason,
            usage_estimated=True,
        )
