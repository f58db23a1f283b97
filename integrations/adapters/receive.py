"""Sources that send traces to iofold instead of being read: OTLP exporters, the Agents SDK.

They have nothing to connect to, test or sync; their adapter only says so (``receive``),
so the UI, the API and the services ask the capability rather than the kind. What they
received is recorded by ``integrations.receivers``.
"""

from __future__ import annotations

from typing import Any

from integrations.adapters.base import Adapter, Capabilities, SourceSettings, invalid_settings


class ReceiverAdapter(Adapter):
    """A source whose traces are posted to ``endpoint`` with an iofold API token."""

    capabilities = Capabilities(receive=True)
    endpoint = ""  # the path exporters post to

    @classmethod
    def clean_settings(
        cls,
        *,
        host: str,
        public_key: str = "",
        secret_key: str = "",
        options: dict[str, Any] | None = None,
    ) -> SourceSettings:
        raise invalid_settings(
            f"{cls.label} sends traces to iofold at {cls.endpoint}; there is nothing to "
            "connect. It is set up on its page, or by the first traces a token sends."
        )

    @classmethod
    def from_settings(cls, settings: SourceSettings, **tuning: Any) -> Adapter:
        return cls()  # nothing to reach: it only answers what it can do

    @classmethod
    def nothing_to_pull(cls, name: str) -> str:
        """Return why a sync or a connection check of this source makes no sense."""
        return f"“{name}” receives traces at {cls.endpoint}; there is nothing to sync or test."


class OtlpReceiver(ReceiverAdapter):
    kind = "otlp"
    label = "OpenTelemetry"
    endpoint = "/v1/traces"
    capabilities = Capabilities(receive=True, conversations=True)


class OpenAIAgentsReceiver(ReceiverAdapter):
    kind = "openai_agents"
    label = "OpenAI Agents SDK"
    endpoint = "/api/v1/openai/traces/ingest"
    capabilities = Capabilities(receive=True, conversations=True)
