"""LLM providers: a registry of dotted paths, imported only when used."""

from __future__ import annotations

from importlib import import_module

from evals.generation.providers.base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Completion,
    Provider,
    ProviderError,
)

__all__ = ["PROVIDERS", "Completion", "Provider", "ProviderError", "get_provider"]

# Lazy so that importing the registry never imports an SDK nobody configured.
PROVIDERS: dict[str, str] = {
    "anthropic": "evals.generation.providers.anthropic.AnthropicProvider",
    "openai": "evals.generation.providers.openai.OpenAIProvider",
}


def get_provider(
    name: str,
    *,
    api_key: str,
    model: str,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    **options,
) -> Provider:
    """Return a configured provider instance for the registered `name`."""
    try:
        dotted = PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ProviderError(f"unknown provider {name!r} (known: {known})", permanent=True) from None
    module_path, _, class_name = dotted.rpartition(".")
    cls = getattr(import_module(module_path), class_name)
    return cls(
        api_key=api_key,
        model=model,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        **options,
    )
