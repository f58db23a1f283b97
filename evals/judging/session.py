"""Answer one run's judge()/llm() calls: the cache, the budget, then the provider.

The sandbox's runner hands each call to `JudgeSession.handle` from the thread that reads
that jail, up to `Limits.call_concurrency` at once. Provider requests happen in those
threads; every database read and write goes through the thread that started the run
(`JudgeSession.run`), so a run's queries stay on its own connection and transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction

from evals.generation.pricing import cost_usd, price_table
from evals.generation.provider_settings import ProviderChoice, resolve_provider
from evals.generation.providers import Provider as LLMProvider
from evals.generation.providers import ProviderError, get_provider
from evals.judging import ledger
from evals.judging.prompting import pick_choice, render_call
from evals.models import JudgeResponse, Provider
from sandbox.calls import CallRefused, CallRequest
from workspaces.models import Workspace

T = TypeVar("T")
logger = logging.getLogger(__name__)

OFFLINE_MESSAGE = (
    "this eval calls judge() or llm(), which needs an LLM provider, and the workspace has "
    "none with a key (it uses the offline synthesiser): choose OpenAI-compatible or "
    "Anthropic, with a key, in the workspace's provider settings"
)
# Chat templates wrap each message in a few tokens the prompt's bytes do not count.
TEMPLATE_TOKENS = 32
# Answers no later call of the run gets past: a wrong key, a model it may not use or one
# that does not exist. The first stops the run instead of being asked again per trace.
STOPPING_STATUSES = (401, 403, 404)
# Answers that were not processed (nothing billed): asked again after the wait the server
# asks for (else RETRY_BACKOFF_S, doubled), at most RETRIES times, every call of the run
# waiting meanwhile. A longer wait than RETRY_MAX_WAIT_S is not waited for.
RETRY_STATUSES = (429, 500, 502, 503, 504, 529)
RETRIES = 2
RETRY_BACKOFF_S = 1.0
RETRY_MAX_WAIT_S = 30.0
# Calls failing one after another: the provider is down, and the run stops.
FAILURES_IN_A_ROW = 5


@dataclass(frozen=True)
class Budget:
    """What one run may spend on judge calls; unpriced models count no dollars."""

    calls: int
    tokens: int
    usd: Decimal
    # Set when the dollars are what is left of the workspace's monthly budget: what the
    # eval and the run are told when it would be exceeded.
    usd_limit_message: str = ""

    @classmethod
    def from_settings(cls, *, usd_cap: Decimal | None = None, usd_cap_message: str = "") -> Budget:
        usd = Decimal(str(settings.IOFOLD_JUDGE_MAX_USD))
        message = ""
        if usd_cap is not None and usd_cap < usd:
            usd, message = max(Decimal(0), usd_cap), usd_cap_message
        return cls(
            calls=settings.IOFOLD_JUDGE_MAX_CALLS,
            tokens=settings.IOFOLD_JUDGE_MAX_TOKENS,
            usd=usd,
            usd_limit_message=message,
        )


@dataclass
class Usage:
    """Calls made to the provider, answers from the cache, tokens and dollars."""

    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    # What the cached answers would have cost: what the calls cost on traces not seen yet.
    cached_cost_usd: Decimal = field(default_factory=Decimal)
    # Of `calls`, those to a model with no known price: their cost is unknown, not $0.
    unpriced_calls: int = 0

    @property
    def list_cost_usd(self) -> Decimal:
        return self.cost_usd + self.cached_cost_usd

    def add(self, *, input_tokens: int, output_tokens: int, cost: Decimal | None) -> None:
        """Count one call; a `cost` of None is a call to a model with no known price."""
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += cost


@dataclass(frozen=True)
class Prompt:
    system: str
    user: str

    @property
    def max_bytes(self) -> int:
        return len(self.system.encode()) + len(self.user.encode())


def render(request: CallRequest) -> Prompt:
    """Return the prompt a call becomes; eval code chooses its text, never the model."""
    return Prompt(
        *render_call(
            request.kind,
            question=request.question,
            context=request.context,
            choices=request.choices,
            prompt=request.prompt,
        )
    )


def cache_key(choice: ProviderChoice, prompt: Prompt, max_tokens: int) -> str:
    material = json.dumps(
        [choice.provider, choice.base_url, choice.model, max_tokens, prompt.system, prompt.user]
    )
    return hashlib.sha256(material.encode()).hexdigest()


class JudgeSession:
    """The judge channel of one run (or one test of a version) in one workspace."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        budget: Budget | None = None,
        timeout: float | None = None,
    ) -> None:
        self.workspace = workspace
        self.choice = resolve_provider(workspace=workspace)
        self.budget = budget or Budget.from_settings()
        self.timeout = timeout if timeout is not None else settings.IOFOLD_JUDGE_TIMEOUT_S
        self.max_tokens = settings.IOFOLD_JUDGE_MAX_OUTPUT_TOKENS
        self.total = Usage()
        # Usage per trace index of the current sandbox call (reset by `run`).
        self.per_trace: dict[int, Usage] = {}
        # Why calls stopped, once they have: the budget refused one, or the provider
        # refuses them all (a wrong key, an unknown model, down). The run stops with it.
        self.exhausted = ""
        self._failures = 0  # calls failed in a row
        self._resume_at = 0.0  # monotonic time before which no call is sent
        self._reserved = Usage()
        self._lock = threading.Lock()
        self._provider: LLMProvider | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._owner: int | None = None
        self._prices = price_table()

    @property
    def available(self) -> bool:
        return self.choice.provider != Provider.OFFLINE

    # The runner's side ---------------------------------------------------------------

    def handle(self, request: CallRequest, index: int) -> str:
        """Answer one call (sandbox.calls.CallHandler); raise CallRefused for the eval."""
        try:
            return self._handle(request, index)
        except CallRefused:
            raise
        except Exception:
            logger.exception("judge call crashed workspace=%s", self.workspace.pk)
            raise CallRefused("the judge call failed on an internal error") from None

    def _handle(self, request: CallRequest, index: int) -> str:
        if not self.available:
            raise CallRefused(OFFLINE_MESSAGE)
        prompt = render(request)
        key = cache_key(self.choice, prompt, self.max_tokens)
        cached = self._on_owner(lambda: self._lookup(key))
        if cached is not None:
            text, input_tokens, output_tokens = cached
            saved = cost_usd(self.choice.model, input_tokens, output_tokens, self._prices)
            with self._lock:
                self.total.cache_hits += 1
                self.total.cached_cost_usd += saved or Decimal(0)
            return self._answer(request, text)
        with self._lock:
            if self.exhausted:
                raise CallRefused(self.exhausted)
        upper_in = prompt.max_bytes + TEMPLATE_TOKENS
        reserved = self._reserve(upper_in)
        try:
            completion = self._complete(prompt)
        except ProviderError as exc:
            self._settle(reserved, None)
            raise CallRefused(self._failed(exc)) from None
        with self._lock:
            self._failures = 0
        cost = cost_usd(
            self.choice.model, completion.input_tokens, completion.output_tokens, self._prices
        )
        self._settle(reserved, (completion.input_tokens, completion.output_tokens, cost), index)
        if not completion.text.strip():
            # A filtered, refused or cut-off answer: paid for, but not kept, so a re-run asks again.
            why = completion.stop_reason or "no text"
            raise CallRefused(f"the judge gave an empty answer ({why})")
        self._on_owner(lambda: self._store(key, completion))
        return self._answer(request, completion.text)

    def _complete(self, prompt: Prompt) -> Any:
        """Return the provider's completion, asking again after a rate limit or an
        overloaded or failing server, once the wait it asked for (shared by the run's
        calls, so they do not hammer it meanwhile) has passed."""
        for attempt in range(RETRIES + 1):
            with self._lock:
                wait = self._resume_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                return self._client().complete(
                    system=prompt.system, messages=[{"role": "user", "content": prompt.user}]
                )
            except ProviderError as exc:
                if exc.status_code == 401 and self._rotated():
                    continue  # the key was changed since the run started: ask with the new one
                delay = exc.retry_after
                if delay is None:
                    delay = RETRY_BACKOFF_S * 2**attempt
                if exc.status_code not in RETRY_STATUSES or delay > RETRY_MAX_WAIT_S:
                    raise
                with self._lock:
                    self._resume_at = max(self._resume_at, time.monotonic() + delay)
                if attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _rotated(self) -> bool:
        """Return whether the workspace's key changed since this run read it, and use the
        new key from the next call on (the same provider, model and base URL only: the
        cache and the prices are theirs)."""
        fresh = self._on_owner(lambda: resolve_provider(workspace=self.workspace))
        with self._lock:
            current = self.choice
            same_target = (fresh.provider, fresh.model, fresh.base_url) == (
                current.provider,
                current.model,
                current.base_url,
            )
            if not same_target or not fresh.api_key or fresh.api_key == current.api_key:
                return False
            self.choice, self._provider = fresh, None
            return True

    def _failed(self, exc: ProviderError) -> str:
        """Return a failed call's message; stop the run's calls when more cannot help."""
        message = f"the judge call failed: {exc.message}"
        with self._lock:
            self._failures += 1
            if self.exhausted:
                return message
            if exc.status_code in STOPPING_STATUSES:
                self.exhausted = (
                    f"{message}; no more calls are made (check the key and model in the "
                    "workspace's provider settings)"
                )
            elif self._failures >= FAILURES_IN_A_ROW:
                self.exhausted = (
                    f"the judge provider failed {self._failures} calls in a row (the last: "
                    f"{exc.message}); no more calls are made, run it again later"
                )
        return message

    def _answer(self, request: CallRequest, text: str) -> str:
        if request.kind != "judge":
            return text
        try:
            return pick_choice(text, request.choices)
        except ValueError as exc:
            raise CallRefused(str(exc)) from None

    def _client(self) -> LLMProvider:
        with self._lock:
            if self._provider is None:
                # A ProviderError (no key, no model) fails this call like the provider's own.
                self._provider = get_provider(
                    self.choice.provider,
                    api_key=self.choice.api_key,
                    model=self.choice.model,
                    base_url=self.choice.base_url or None,
                    timeout=self.timeout,
                    # The SDK's retries would not wait for the run's other calls:
                    # `_complete` retries what was not processed, once they all wait.
                    max_retries=0,
                    max_tokens=self.max_tokens,
                    # Anthropic's current API takes no temperature (its SDK refuses one).
                    temperature=0.0 if self.choice.provider == Provider.OPENAI else None,
                )
            return self._provider

    def _reserve(self, upper_in: int) -> tuple[int, Decimal]:
        """Hold the most this call can cost, in this run and in the workspace's month, or
        refuse it: neither budget is ever exceeded, however many runs spend at once.

        A prompt has at most as many tokens as bytes, and the answer is capped, so the
        reservation is an upper bound on what the provider will report.
        """
        reserved = self._reserve_run(upper_in)
        usd = reserved[1]
        if usd:
            budget = self._on_owner(
                lambda: ledger.reserve(workspace=self.workspace, usd=usd, timeout=self.timeout)
            )
            if budget is not None:
                self._release(reserved)
                with self._lock:
                    self.exhausted = ledger.budget_message(budget)
                raise CallRefused(self.exhausted)
        return reserved

    def _reserve_run(self, upper_in: int) -> tuple[int, Decimal]:
        tokens = upper_in + self.max_tokens
        usd = cost_usd(self.choice.model, upper_in, self.max_tokens, self._prices) or Decimal(0)
        with self._lock:
            spent, held, budget = self.total, self._reserved, self.budget
            if spent.calls + held.calls + 1 > budget.calls:
                reason = f"{budget.calls} calls"
            elif spent.input_tokens + spent.output_tokens + held.input_tokens + tokens > (
                budget.tokens
            ):
                reason = f"{budget.tokens} tokens"
            elif spent.cost_usd + held.cost_usd + usd > budget.usd:
                if budget.usd_limit_message:
                    self.exhausted = budget.usd_limit_message
                    raise CallRefused(self.exhausted)
                reason = f"${budget.usd}"
            else:
                held.calls += 1
                held.input_tokens += tokens
                held.cost_usd += usd
                return tokens, usd
            self.exhausted = (
                f"the judge budget for this run is spent ({reason}; {spent.calls} calls, "
                f"{spent.input_tokens + spent.output_tokens} tokens, ${spent.cost_usd:.4f} "
                "so far): no more calls are made"
            )
            raise CallRefused(self.exhausted)

    def _settle(
        self,
        reserved: tuple[int, Decimal],
        actual: tuple[int, int, Decimal | None] | None,
        index: int | None = None,
    ) -> None:
        usd = reserved[1]
        if usd:
            cost = (actual[2] if actual is not None else None) or Decimal(0)
            self._on_owner(lambda: ledger.settle(workspace=self.workspace, held=usd, cost=cost))
        if actual is None:
            self._release(reserved)
            return
        with self._lock:
            # Released and counted at once, so the run's budget never misses the call.
            self._release(reserved, locked=True)
            input_tokens, output_tokens, cost = actual
            self.total.add(input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)
            if index is not None:
                self.per_trace.setdefault(index, Usage()).add(
                    input_tokens=input_tokens, output_tokens=output_tokens, cost=cost
                )

    def _release(self, reserved: tuple[int, Decimal], *, locked: bool = False) -> None:
        if not locked:
            with self._lock:
                return self._release(reserved, locked=True)
        tokens, usd = reserved
        self._reserved.calls -= 1
        self._reserved.input_tokens -= tokens
        self._reserved.cost_usd -= usd

    # The database's side (the run's own thread) ---------------------------------------

    def _lookup(self, key: str) -> tuple[str, int, int] | None:
        return (
            JudgeResponse.objects.for_workspace(self.workspace)
            .filter(key=key)
            .values_list("text", "input_tokens", "output_tokens")
            .first()
        )

    def _store(self, key: str, completion: Any) -> None:
        try:
            with transaction.atomic():
                JudgeResponse.objects.create(
                    workspace=self.workspace,
                    key=key,
                    model=completion.model[:100],
                    text=completion.text,
                    input_tokens=completion.input_tokens,
                    output_tokens=completion.output_tokens,
                )
        except IntegrityError:
            pass  # two jails asked the same prompt at once: one answer is kept

    def _on_owner(self, fn: Callable[[], T]) -> T:
        if self._owner is None or threading.get_ident() == self._owner:
            return fn()
        done: Future = Future()
        self._jobs.put((fn, done))
        return done.result()

    def run(self, work: Callable[[], T]) -> T:
        """Return `work()` (a sandbox run with `calls=self.handle`), serving its queries here."""
        self._owner = threading.get_ident()
        self.per_trace = {}
        outcome: Future = Future()

        def target() -> None:
            try:
                outcome.set_result(work())
            except BaseException as exc:
                outcome.set_exception(exc)
            finally:
                self._jobs.put(None)

        worker = threading.Thread(target=target, name="judge-run", daemon=True)
        worker.start()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                fn, done = job
                try:
                    done.set_result(fn())
                except BaseException as exc:
                    done.set_exception(exc)
        finally:
            worker.join()
            self._owner = None
        return outcome.result()
