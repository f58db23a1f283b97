"""Talking to Langfuse: the cached SDK client, raw reads and writes, and the retry policy.

Every request goes through ``LangfuseTransport._call``, which owns the attempt budget, the
polite waits on 429s and the mapping of HTTP and network failures to ``AdapterError``.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pydantic
from django.conf import settings
from langfuse._version import __version__ as SDK_VERSION
from langfuse.api import LangfuseAPI
from langfuse.api.core import ApiError
from langfuse.api.core.datetime_utils import serialize_datetime

from integrations.adapters.base import (
    AdapterError,
    ScorePushResult,
    finite_float,
    retry_after_seconds,
)
from iofold.lib import jsontext, outbound

logger = logging.getLogger(__name__)

# The field groups a trace is built from (normalise.py). "time" (createdAt, updatedAt,
# completionStartTime) ends up nowhere in a trace: asked for, it was a tenth of each page.
FIELDS = "core,basic,io,metadata,model,usage,trace_context"
PAGE_LIMIT = 1000  # the server's maximum; fewer requests matter more than smaller replies

_clients: dict[tuple[str, str, str, str], LangfuseAPI] = {}
_clients_lock = threading.Lock()


def get_client(*, host: str, public_key: str, secret_key: str, timeout: float) -> LangfuseAPI:
    """Return the cached SDK API client for this host and key pair."""
    # The secret's hash is part of the key so a rotated secret gets a fresh client, the
    # proxy so that a changed proxy setting does.
    key = (
        host,
        public_key,
        hashlib.sha256(secret_key.encode()).hexdigest(),
        settings.IOFOLD_OUTBOUND_PROXY,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = LangfuseAPI(
                base_url=host,
                username=public_key,
                password=secret_key,
                x_langfuse_sdk_name="python",
                x_langfuse_sdk_version=SDK_VERSION,
                x_langfuse_public_key=public_key,
                timeout=timeout,
                # The host is the workspace's choice: connect only where it may point.
                httpx_client=httpx.Client(
                    transport=outbound.guarded_transport(httpx),
                    timeout=timeout,
                    follow_redirects=True,  # as the SDK's own client
                ),
            )
            _clients[key] = client
        return client


def _json_reply(http: Any, path: str, **request: Any) -> tuple[int, Any]:
    """Make one request through the SDK's HTTP client; return its status and parsed JSON.

    Raises the ApiError the SDK would for a reply that is no JSON or not a 2xx. The reply
    is streamed and its body kept only here: an httpx response refers to itself (through
    its stream), so one that read its body would hold it until the cyclic collector runs,
    which a sync pauses: a megabyte a page, 60 MB over a 10,000-trace sync.
    """
    with http.stream(path, **request) as response:
        content = b"".join(response.iter_bytes())
        status, headers = response.status_code, response.headers
    try:
        body = jsontext.loads_as_json(content)
    except ValueError:
        text = content.decode(errors="replace")
        raise ApiError(status_code=status, headers=dict(headers), body=text) from None
    if not 200 <= status < 300:
        raise ApiError(status_code=status, headers=dict(headers), body=body)
    return status, body


class WindowTooHeavy(Exception):
    """The server timed out on the query (HTTP 422); a narrower time range may pass."""


class LangfuseTransport:
    """Requests to one Langfuse host with one key pair; the adapter's network half.

    Expects ``host``, ``public_key``, ``_secret_key``, ``timeout``, ``sleep``,
    ``max_attempts``, ``max_delay``, ``page_limit`` and ``requests_made`` on the instance.
    """

    host: str
    public_key: str
    _secret_key: str
    timeout: float
    sleep: Callable[[float], None]
    max_attempts: int
    max_delay: float
    page_limit: int
    requests_made: int

    @property
    def client(self) -> LangfuseAPI:
        return get_client(
            host=self.host,
            public_key=self.public_key,
            secret_key=self._secret_key,
            timeout=self.timeout,
        )

    def _get_observations(self, options: dict[str, Any], **query: Any) -> dict[str, Any]:
        """Read one page of v2 observation rows as wire dicts.

        This is `observations.get_many` minus its model building: the request goes through
        the SDK's own HTTP client (auth, headers, base URL, query encoding, timeouts), but
        SDK 5.0.4 spends about 4 ms per row turning the reply into pydantic models, which
        would make a 50,000-row sync CPU-bound for minutes. Errors map to the same
        exceptions the SDK raises.
        """
        params = {
            "fields": FIELDS,
            "limit": self.page_limit,
            "cursor": query.get("cursor"),
            "environment": query.get("environment"),
            "filter": query.get("filter"),
            "fromStartTime": serialize_datetime(query["from_start_time"])
            if query.get("from_start_time")
            else None,
            "toStartTime": serialize_datetime(query["to_start_time"])
            if query.get("to_start_time")
            else None,
        }
        http = self.client.observations._raw_client._client_wrapper.httpx_client
        _, body = _json_reply(
            http, "api/public/v2/observations", method="GET", params=params, request_options=options
        )
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("data"), list)
            or not all(isinstance(r, dict) and "id" in r and "startTime" in r for r in body["data"])
        ):
            raise ValueError("not an observations page")
        if not isinstance(body.get("meta"), dict):
            body["meta"] = {}
        return body

    def _get_scores(
        self, options: dict[str, Any], *, name: str, trace_ids: list[str], cursor: str | None
    ) -> dict[str, Any]:
        """Read one page of v3 scores with their subject (the trace) and comment."""
        params = {
            "name": name,
            "traceId": ",".join(trace_ids),
            "fields": "subject,details",
            "limit": 100,
            "cursor": cursor,
        }
        http = self.client.scores._raw_client._client_wrapper.httpx_client
        _, body = _json_reply(
            http, "api/public/v3/scores", method="GET", params=params, request_options=options
        )
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ValueError("not a scores page")
        if not isinstance(body.get("meta"), dict):
            body["meta"] = {}
        return body

    def _post_scores(self, options: dict[str, Any], *, body: bytes) -> ScorePushResult | None:
        """POST one encoded score batch; return the 207 counts, or None when all were accepted.

        This is `scores.create` minus its model round trips: the request goes through the
        SDK's own HTTP client (auth, headers, base URL, timeouts), but SDK 5.0.4 spends about
        half a millisecond per score converting typed requests it is handed, and the batch
        is already JSON here. Errors map to the same exceptions the SDK raises.
        """
        http = self.client.scores._raw_client._client_wrapper.httpx_client
        status, reply = _json_reply(
            http,
            "api/public/scores",
            method="POST",
            content=body,
            headers={"Content-Type": "application/json"},
            request_options=options,
        )
        if not isinstance(reply, dict):
            raise ValueError("not a score batch reply")
        if status != 207 and "accepted" not in reply:
            return None  # 202 {"message": "Accepted"}: the whole batch went in
        accepted, rejected = reply.get("accepted"), reply.get("rejected")
        errors = reply.get("errors")
        if (
            not isinstance(accepted, int)
            or not isinstance(rejected, int)
            or not isinstance(errors, list)
            or not all(isinstance(e, dict) and isinstance(e.get("message"), str) for e in errors)
        ):
            raise ValueError("not a score batch result")
        return ScorePushResult(
            accepted=accepted, rejected=rejected, errors=[e["message"] for e in errors]
        )

    # --- one SDK call with the retry policy ------------------------------------------------

    def _call(
        self,
        fn: Callable[[dict[str, Any]], Any],
        *,
        what: str,
        network_retries: bool = True,
        heavy_is_error: bool = True,
    ) -> Any:
        # The SDK's own retries sleep with time.sleep and ignore the attempt budget; they are
        # switched off so this loop alone decides (and tests can inject the sleep).
        options = {"max_retries": 0, "timeout_in_seconds": self.timeout}
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                self.requests_made += 1
                return fn(options)
            except ApiError as exc:
                delay = self._api_error_delay(
                    exc, attempt=attempt, last=last, what=what, heavy_is_error=heavy_is_error
                )
            except httpx.TimeoutException:
                if last or not network_retries:
                    raise AdapterError(
                        f"{self.host} did not answer the {what} within {self.timeout:g}s.",
                        permanent=False,
                        code="timeout",
                    ) from None
                delay = self._backoff(attempt)
            except httpx.TransportError as exc:
                if (refused := outbound.refusal_behind(exc)) is not None:
                    raise AdapterError(
                        f"Could not reach {self.host}: {refused.message}",
                        permanent=True,
                        code="unreachable",
                    ) from None
                if last or not network_retries:
                    raise AdapterError(
                        self._unreachable_message(exc), permanent=False, code="unreachable"
                    ) from None
                delay = self._backoff(attempt)
            except (pydantic.ValidationError, ValueError, TypeError):
                raise AdapterError(
                    f"{self.host} answered the {what} with data that is not Langfuse's; "
                    "check the host is a Langfuse server (e.g. https://cloud.langfuse.com).",
                    permanent=True,
                    code="not_langfuse",
                ) from None
            self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _api_error_delay(
        self, exc: ApiError, *, attempt: int, last: bool, what: str, heavy_is_error: bool
    ) -> float:
        """Return how long to wait before retrying after an HTTP error, or raise it mapped."""
        status = exc.status_code or 0
        if 200 <= status < 300:  # a 2xx whose body is not JSON: an HTML page, say
            raise self._client_error(exc, what=what) from None
        if status == 429:
            delay = self._retry_after(exc) or self._backoff(attempt)
            if last:
                raise AdapterError(
                    f"Langfuse rate limit reached during the {what}; "
                    f"retry in {delay:.0f}s. "
                    "The Hobby plan allows 30 read requests a minute.",
                    permanent=False,
                    code="rate_limited",
                    retry_after=delay,
                ) from None
            logger.info("langfuse rate limited host=%s delay=%.1f", self.host, delay)
            return delay
        if status >= 500 or status == 408:
            if last:
                raise AdapterError(
                    f"Langfuse answered HTTP {status} to the {what} "
                    f"{self.max_attempts} times; "
                    "it may be down, try again later.",
                    permanent=False,
                    code="server_error",
                ) from None
            return self._backoff(attempt)
        if status == 422 and not heavy_is_error:
            raise WindowTooHeavy() from None
        raise self._client_error(exc, what=what) from None

    def _client_error(self, exc: ApiError, *, what: str) -> AdapterError:
        status = exc.status_code or 0
        body = exc.body
        server_message = self._scrub(str(body.get("message", ""))) if isinstance(body, dict) else ""
        detail = f" Langfuse said: {server_message}" if server_message else ""
        if not isinstance(body, (dict, list)) and status != 401:
            kind = (
                "HTML"
                if isinstance(body, str) and "<html" in body.lower()
                else f"HTTP {status} without JSON"
            )
            return AdapterError(
                f"{self.host} does not look like a Langfuse server: the {what} got {kind}. "
                "Use the base URL of your Langfuse instance, e.g. https://cloud.langfuse.com.",
                permanent=True,
                code="not_langfuse",
            )
        if status == 401:
            return AdapterError(
                f"Langfuse rejected the API keys (HTTP 401) for public key {self.public_key} "
                f"on {self.host}; "
                "check the public and secret key and that they belong to this host's region.",
                permanent=True,
                code="auth",
            )
        if status == 403:
            return AdapterError(
                f"Langfuse denied access (HTTP 403) for public key {self.public_key}; "
                f"use a project's API keys, not an organization's.{detail}",
                permanent=True,
                code="auth",
            )
        if status == 404:
            return AdapterError(
                f"{self.host} has no {what} endpoint (HTTP 404): iofold needs Langfuse Cloud or "
                f"self-hosted Langfuse 4.59 or later.{detail}",
                permanent=True,
                code="unsupported_version",
            )
        if status == 400 and what == "score push":
            return AdapterError(
                "Langfuse refused the score batch (HTTP 400); "
                f"batch scores need Langfuse 4.59 or later.{detail}",
                permanent=True,
                code="bad_request",
            )
        return AdapterError(
            f"Langfuse refused the {what} (HTTP {status}).{detail}",
            permanent=True,
            code="bad_request",
        )

    def _unreachable_message(self, exc: Exception) -> str:
        cause = exc.__cause__ or exc.__context__
        text = str(exc).lower()
        if (
            isinstance(cause, socket.gaierror)
            or "name or service not known" in text
            or "nodename" in text
        ):
            reason = "the host name could not be resolved"
        elif "refused" in text:
            reason = "the connection was refused"
        else:
            reason = self._scrub(str(exc)).rstrip(".") or type(exc).__name__
        return (
            f"Could not reach {self.host}: {reason}. Check the URL and that the server is running."
        )

    def _retry_after(self, exc: ApiError) -> float | None:
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        delay = retry_after_seconds(headers.get("retry-after"))
        if delay is None and isinstance(exc.body, dict):
            details = exc.body.get("details")
            if isinstance(details, dict):
                delay = finite_float(details.get("retryAfterSeconds"))
        if delay is None:
            return None
        return min(max(delay, 0.0), self.max_delay)

    def _backoff(self, attempt: int) -> float:
        return min(2.0 ** (attempt - 1), self.max_delay)

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret_key, "***") if self._secret_key else text
