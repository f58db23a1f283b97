"""Provider base class, the completion record and the provider error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from integrations.adapters.base import retry_after_seconds
from iofold.lib import outbound

DEFAULT_TIMEOUT = 120.0
# The SDKs back off between attempts; more than a couple of retries belongs to the
# Celery task, which backs off for longer and frees the worker meanwhile.
DEFAULT_MAX_RETRIES = 2
# Eval functions are short; this caps a runaway answer, not a normal one.
DEFAULT_MAX_TOKENS = 8192
REDACTED = "[redacted]"
# What a status means to whoever reads the error (Anthropic's 529: "overloaded").
STATUS_LABELS = {429: "rate limited", 529: "overloaded (HTTP 529)"}
# What the SDKs raise, outside their own error classes, on a 200 whose body is not JSON
# (a proxy's HTML page, a cut-off body): `complete` catches these with the SDK's errors.
UNREADABLE_ANSWER = (json.JSONDecodeError,)


@dataclass(frozen=True)
class Completion:
    """One answer from a provider, with the token usage it reported."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    stop_reason: str | None = None
    # True when the server reported no usage and the counts are chars/4 estimates.
    usage_estimated: bool = False


class ProviderError(Exception):
    """A provider call failed; `permanent` says whether retrying can help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        # Seconds the server asked the caller to wait (Retry-After), when it said.
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"ProviderError({self.message!r}, permanent={self.permanent})"


class Provider:
    """Send a system prompt and a conversation to one model and return its answer."""

    name = ""

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ):
        if not model:
            raise ProviderError(f"{self.name}: no model configured", permanent=True)
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.temperature = temperature
        # Kept only to scrub it from error text; never shown in repr or messages.
        self._secret = api_key or ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self.model!r} base_url={self.base_url!r}>"

    def complete(self, *, system: str, messages: list[dict[str, Any]]) -> Completion:
        """Return the model's answer to `messages` under the `system` prompt."""
        raise NotImplementedError

    def redact(self, text: str) -> str:
        """Return `text` with the API key replaced, for messages that may echo it."""
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, REDACTED)
        return text

    def error(
        self,
        message: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> ProviderError:
        """Build a ProviderError whose message is prefixed and scrubbed of the key."""
        text = self.redact(f"{self.name}: {message}")
        return ProviderError(
            text, permanent=permanent, status_code=status_code, retry_after=retry_after
        )

    def map_sdk_error(self, exc: Exception) -> ProviderError:
        """Translate an SDK exception into a ProviderError with the right permanence.

        Both SDKs share the class names (they are generated from one template), so
        the mapping is by status code and a duck-typed check for the connection errors.
        """
        if isinstance(exc, UNREADABLE_ANSWER):
            return self.error("the answer was not JSON", permanent=False)
        refused = outbound.refusal_behind(exc)
        if refused is not None:
            # Connecting again cannot help: the address is not one iofold may reach.
            return self.error(refused.message, permanent=True)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            detail = _error_detail(exc)
            # 408 request timeout and 409 lock timeout are retried by the SDKs too.
            transient = status in (408, 409, 429) or status >= 500
            label = STATUS_LABELS.get(status, f"HTTP {status}")
            return self.error(
                f"{label}: {detail}",
                permanent=not transient,
                status_code=status,
                retry_after=_retry_after(exc),
            )
        kind = type(exc).__name__
        if kind == "APITimeoutError":
            return self.error(f"request timed out after {self.timeout:g}s", permanent=False)
        if kind == "APIConnectionError":
            return self.error("could not connect to the API", permanent=False)
        # Anything else (an unparseable response, a client-side validation error)
        # will fail the same way next time.
        return self.error(f"{kind}: {_truncate(str(exc))}", permanent=True)


def _retry_after(exc: Exception) -> float | None:
    """Return the wait an error response asks for (retry-after-ms, then Retry-After)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    millis = retry_after_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    return retry_after_seconds(headers.get("retry-after"))


def _error_detail(exc: Exception) -> str:
    """Return the server's own error message from an SDK status error."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return _truncate(inner["message"])
        if isinstance(inner, str):
            return _truncate(inner)
    return _truncate(getattr(exc, "message", None) or str(exc))


def _truncate(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def estimate_tokens(text: str) -> int:
    """Return a rough token count (chars/4), used where a server reports no usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
