"""Anthropic messages API through the official `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from evals.generation.providers.base import (
    DEFAULT_MAX_TOKENS,
    UNREADABLE_ANSWER,
    Completion,
    Provider,
)
from iofold.lib import outbound


class AnthropicProvider(Provider):
    """Claude models through the messages API."""

    name = "anthropic"

    def __init__(self, *, api_key: str, model: str, base_url: str | None = None, **options: Any):
        super().__init__(api_key=api_key, model=model, base_url=base_url, **options)
        if not api_key:
            raise self.error("no API key configured", permanent=True)
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            # The base URL may be the workspace's choice: connect only where it may point.
            http_client=anthropic.DefaultHttpxClient(transport=outbound.guarded_transport(httpx2)),
        )

    def complete(self, *, system: str, messages: list[dict[str, Any]]) -> Completion:
        """Return the model's answer to `messages` under the `system` prompt."""
        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        try:
            response = self._client.messages.create(
                model=self.model,
                system=system,
                messages=messages,
                max_tokens=self.max_tokens or DEFAULT_MAX_TOKENS,
                **kwargs,
            )
        except (anthropic.AnthropicError, *UNREADABLE_ANSWER) as exc:
            raise self.map_sdk_error(exc) from None
        # Thinking and tool blocks carry no answer text.
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(
            text=text,
            input_tokens=response.usage.input_tokens or 0,
            output_tokens=response.usage.output_tokens or 0,
            model=response.model or self.model,
            stop_reason=response.stop_reason,
        )
