"""Token prices per model and the dollar cost of a completion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MILLION = Decimal(1_000_000)
# Dated snapshots ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929") and aliases
# ("-latest") are priced like their base model; any other suffix is a different model.
SNAPSHOT_SUFFIX = re.compile(r"^-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True)
class Price:
    """Dollars per million input and output tokens."""

    input_per_million: Decimal
    output_per_million: Decimal


def _p(input_price: str, output_price: str) -> Price:
    return Price(Decimal(input_price), Decimal(output_price))


# List prices (USD per million tokens, standard tier, prompts under the long-context
# threshold) as published by the vendors; the 2026 models were checked in November 2026.
# Override them per deployment through `parse_price_table` when they change.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-6.1-sol": _p("2", "10"),
    "gpt-6-sol": _p("2", "10"),
    "claude-sonnet-5-5": _p("2", "10"),
    "claude-sonnet-5": _p("2", "10"),
    "claude-opus-5": _p("5", "25"),
    "claude-sonnet-4-6": _p("3", "15"),
    "gpt-5": _p("1.25", "10"),
    "gpt-5-mini": _p("0.25", "2"),
    "gpt-5-nano": _p("0.05", "0.40"),
    "gpt-4.1": _p("2", "8"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.40"),
    "gpt-4o": _p("2.50", "10"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "o3": _p("2", "8"),
    "o4-mini": _p("1.10", "4.40"),
    "o3-mini": _p("1.10", "4.40"),
    "claude-opus-4-5": _p("5", "25"),
    "claude-opus-4-1": _p("15", "75"),
    "claude-opus-4-0": _p("15", "75"),
    "claude-sonnet-4-5": _p("3", "15"),
    "claude-sonnet-4-0": _p("3", "15"),
    "claude-3-7-sonnet": _p("3", "15"),
    "claude-haiku-4-5": _p("1", "5"),
    "claude-3-5-haiku": _p("0.80", "4"),
}


def find_price(model: str, table: Mapping[str, Price] | None = None) -> Price | None:
    """Return the price for `model`, matching dated snapshots to their base name."""
    prices = DEFAULT_PRICES if table is None else table
    if model in prices:
        return prices[model]
    # Longest base first, so "gpt-4o-mini-2024-07-18" never matches "gpt-4o".
    for base in sorted(prices, key=len, reverse=True):
        if model.startswith(base) and SNAPSHOT_SUFFIX.match(model[len(base) :]):
            return prices[base]
    return None


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    table: Mapping[str, Price] | None = None,
) -> Decimal | None:
    """Return the dollar cost of a call, or None when the model has no known price."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    price = find_price(model, table)
    if price is None:
        return None
    dollars = input_tokens * price.input_per_million + output_tokens * price.output_per_million
    return dollars / MILLION


def unpriced_note(calls: int | None, models: Iterable[str] = ()) -> str:
    """Return how a cost with no known price reads: "unknown (no price for this model)",
    or with `calls` "unknown for 3 calls (no price for local-llama)"; "" for no calls.

    What such calls cost is unknown, not $0: a price in IOFOLD_LLM_PRICES makes it known.
    """
    names = ", ".join(sorted({m for m in models if m})) or "this model"
    if calls is None:
        return f"unknown (no price for {names})"
    if not calls:
        return ""
    return f"unknown for {calls} call{'' if calls == 1 else 's'} (no price for {names})"


def parse_price_table(
    raw: Mapping[str, Mapping[str, object]],
    *,
    base: Mapping[str, Price] | None = None,
) -> dict[str, Price]:
    """Return `base` (default: DEFAULT_PRICES) updated with prices from settings or JSON.

    `raw` maps a model name to {"input": ..., "output": ...} in dollars per million
    tokens; numbers are given as strings or numbers. Anything else raises ValueError.
    """
    table = dict(DEFAULT_PRICES if base is None else base)
    for model, entry in raw.items():
        if not isinstance(entry, Mapping) or set(entry) != {"input", "output"}:
            raise ValueError(f"price for {model!r} must have exactly 'input' and 'output'")
        table[model] = Price(_decimal(model, entry["input"]), _decimal(model, entry["output"]))
    return table


def _decimal(model: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"price for {model!r} is not a number: {value!r}")
    try:
        # str() first so a float such as 0.15 becomes Decimal("0.15"), not its binary expansion.
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"price for {model!r} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"price for {model!r} must be a non-negative number: {value!r}")
    return number


def price_table() -> dict[str, Price]:
    """Return this deployment's prices: the list prices updated with IOFOLD_LLM_PRICES."""
    from django.conf import settings

    return parse_price_table(settings.IOFOLD_LLM_PRICES)
