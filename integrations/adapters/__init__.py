"""Registry of trace-platform adapters, imported lazily by kind."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from integrations.adapters.base import Adapter

# Dotted paths, not classes, so importing the registry never pulls in a platform SDK.
ADAPTERS: dict[str, str] = {
    "langfuse": "integrations.adapters.langfuse.LangfuseAdapter",
    "langsmith": "integrations.adapters.langsmith.LangSmithAdapter",
    "openai": "integrations.adapters.openai.OpenAIAdapter",
    "openai_agents": "integrations.adapters.receive.OpenAIAgentsReceiver",
    "otlp": "integrations.adapters.receive.OtlpReceiver",
}


def get_adapter_class(kind: str) -> type[Adapter]:
    """Return the adapter class registered for `kind`."""
    try:
        dotted = ADAPTERS[kind]
    except KeyError:
        raise LookupError(f"No adapter for integration kind {kind!r}") from None
    module_name, _, class_name = dotted.rpartition(".")
    return getattr(import_module(module_name), class_name)


def adapter_kinds() -> list[str]:
    """Return the registered integration kinds."""
    return sorted(ADAPTERS)


def push_back_kinds() -> list[str]:
    """Return the kinds whose sources take verdicts back (scores, feedback)."""
    return [kind for kind in adapter_kinds() if get_adapter_class(kind).capabilities.push_back]


def receiver_kinds() -> list[str]:
    """Return the kinds that receive traces (exporters post them) rather than being read."""
    return [kind for kind in adapter_kinds() if get_adapter_class(kind).capabilities.receive]


def receives(kind: str) -> bool:
    """Return whether sources of ``kind`` receive traces; False for an unknown kind."""
    return kind in ADAPTERS and get_adapter_class(kind).capabilities.receive
