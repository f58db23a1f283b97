"""Candidate trace features for the offline synthesiser, as bit masks over examples.

Two pools: structural features (lengths, text shapes, phrase lexicons, facts comparing
fields, facts about the steps) and word n-grams. The learner tries the structural pool
first and admits words only when they clearly beat it, because from a few dozen labels
some accidental word always separates the training set.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass

from evals.synthesis import constraints, runtime

# measure: (family, "... is {}" statement, "... under {}" statement)
MEASURES = {
    "output_chars": (
        "length",
        "Output is {} characters long",
        "Output is shorter than {} characters",
    ),
    "output_words": ("length", "Output is {} words long", "Output is shorter than {} words"),
    "output_sentences": ("length", "Output has {} sentences", "Output has fewer than {} sentences"),
    "output_lines": ("length", "Output has {} lines", "Output has fewer than {} lines"),
    "output_paragraphs": (
        "length",
        "Output has {} paragraphs",
        "Output has fewer than {} paragraphs",
    ),
    "input_words": ("length", "Input is {} words long", "Input is shorter than {} words"),
    "output_input_ratio": (
        "length",
        "Output is {} times as many words as the input",
        "Output is less than {} times as many words as the input",
    ),
    "uppercase_share": (
        "shape",
        "Output's letters are {} % upper case",
        "Output's letters are under {} % upper case",
    ),
    "repetition_share": (
        "repetition",
        "Output repeats itself: {} % of its four-word runs occur twice",
        "Output repeats itself little: under {} % of its four-word runs occur twice",
    ),
    "steps": ("steps", "Trace has {} steps", "Trace has fewer than {} steps"),
    "tool_calls": ("steps", "Trace made {} tool calls", "Trace made fewer than {} tool calls"),
    "read_calls": (
        "steps",
        "Trace made {} read-only tool calls",
        "Trace made fewer than {} read-only tool calls",
    ),
    "write_calls": (
        "steps",
        "Trace made {} tool calls that change something",
        "Trace made fewer than {} tool calls that change something",
    ),
    "distinct_tools": (
        "steps",
        "Trace used {} different tools",
        "Trace used fewer than {} different tools",
    ),
    "step_errors": ("error", "Trace has {} failed steps", "Trace has fewer than {} failed steps"),
    "tool_errors": (
        "error",
        "Trace has {} failed tool calls",
        "Trace has fewer than {} failed tool calls",
    ),
    "user_turns": ("steps", "Trace has {} user turns", "Trace has fewer than {} user turns"),
    "turns": ("turns", "Conversation has {} turns", "Conversation has fewer than {} turns"),
    "turns_with_tool_errors": (
        "error",
        "A tool failed in {} turns of the conversation",
        "A tool failed in fewer than {} turns of the conversation",
    ),
    "agent_turns": ("steps", "Trace has {} agent turns", "Trace has fewer than {} agent turns"),
    "tool_arguments": (
        "tool",
        "Trace passed {} arguments to tools",
        "Trace passed fewer than {} arguments to tools",
    ),
    "write_arguments": (
        "tool",
        "Trace passed {} arguments to tools that change something",
        "Trace passed fewer than {} arguments to tools that change something",
    ),
    "changes": (
        "tool",
        "Trace made {} changes that succeeded",
        "Trace made fewer than {} changes that succeeded",
    ),
    "confirmation_requests": (
        "tool",
        "The agent asked for confirmation {} times",
        "The agent asked for confirmation fewer than {} times",
    ),
    "user_words": ("length", "The user wrote {} words", "The user wrote fewer than {} words"),
    "latency_ms": ("latency", "Latency is {} ms", "Latency is under {} ms or unknown"),
    "cost": ("cost", "Cost is {}", "Cost is under {} or unknown"),
}

_SHAPE_NAMES = {
    "url": "a URL",
    "md_link": "a Markdown link",
    "md_image": "a Markdown image",
    "email": "an email address",
    "phone": "a phone number",
    "date": "a date",
    "street_address": "a street address",
    "id_token": "an ID-like token",
    "long_number": "a long number",
    "money": "an amount of money",
    "percent": "a percentage",
    "placeholder": "a placeholder",
    "quote": "a quoted passage",
    "heading": "a Markdown heading",
    "bullet_list": "a bulleted list",
    "numbered_list": "a numbered list",
    "code_block": "a code block",
    "inline_code": "inline code",
    "table": "a table",
    "bold": "bold text",
    "exclamation": "an exclamation mark",
}
_SHAPE_FAMILY = {
    "email": "pii",
    "phone": "pii",
    "date": "pii",
    "street_address": "pii",
    "id_token": "ids",
    "long_number": "ids",
    "money": "money",
    "percent": "money",
    "url": "links",
    "md_link": "links",
    "md_image": "links",
    "placeholder": "links",
}
_LEXICON_NAMES = {
    "refusal": "a refusal phrase",
    "apology": "an apology",
    "hedge": "a hedging phrase",
    "success": "a claim of success",
    "failure": "a mention of failure",
    "asks_confirmation": "a request for confirmation",
    "disclaimer": "a disclaimer",
}


def _flag_table() -> dict[str, tuple[str, str, str]]:
    """Return name -> (family, statement when it holds, statement when it does not)."""
    table = {}
    for name, noun in _SHAPE_NAMES.items():
        family = _SHAPE_FAMILY.get(name, "shape")
        table["out_" + name] = (
            family,
            f"Output contains {noun}",
            f"Output contains no {noun[2:] if noun.startswith('a ') else noun}",
        )
    for name in ("url", "md_link", "email", "phone", "date", "street_address", "id_token"):
        noun = _SHAPE_NAMES[name]
        bare = noun.split(" ", 1)[1]
        table["in_" + name] = (
            _SHAPE_FAMILY.get(name, "shape"),
            f"Input contains {noun}",
            f"Input contains no {bare}",
        )
    for name, noun in _LEXICON_NAMES.items():
        family = "refusal" if name in ("refusal", "apology") else "tone"
        table["out_" + name] = (
            family,
            f"Output contains {noun}",
            f"Output contains no {noun.split(' ', 1)[1]}",
        )
    table.update(
        {
            "out_question": (
                "shape",
                "Output ends with a question",
                "Output does not end with a question",
            ),
            "out_empty": ("shape", "Output is empty", "Output is not empty"),
            "out_json": ("json", "Output is JSON", "Output is not a JSON object or array"),
            "in_refusal": (
                "refusal",
                "Input contains a refusal phrase",
                "Input contains no refusal phrase",
            ),
            "copies_input_value": (
                "compare",
                "Output repeats a field value from the input",
                "Output repeats no field value from the input",
            ),
            "copies_input_number": (
                "compare",
                "Output repeats a number from the input",
                "Output repeats no number from the input",
            ),
            "copies_input_name": (
                "compare",
                "Output repeats a name from the input",
                "Output repeats no name from the input",
            ),
            "copies_input_id": (
                "compare",
                "Output repeats an ID from the input",
                "Output repeats no ID from the input",
            ),
            "copies_input_run": (
                "compare",
                "Output copies eight words in a row from the input",
                "Output copies no eight-word run from the input",
            ),
            "mentions_tool_result": (
                "compare",
                "Output mentions a value a tool returned",
                "Output mentions no value a tool returned",
            ),
            "contradicts_tool_error": (
                "error",
                "Output claims success after a tool failed",
                "Output does not claim success after a tool failed",
            ),
            "step_error": ("error", "A step failed", "No step reported an error"),
            "tool_error": ("error", "A tool call failed", "No tool call failed"),
            "write_called": (
                "tool",
                "A tool that changes something was called",
                "No tool that changes something was called",
            ),
            "read_called": ("tool", "A read-only tool was called", "No read-only tool was called"),
            "handoff": (
                "tool",
                "The conversation was handed off",
                "The conversation was not handed off",
            ),
            "ended_by_handoff": (
                "tool",
                "The conversation ended with a handoff",
                "The conversation did not end with a handoff",
            ),
            "last_action_write": (
                "tool",
                "The last tool call changed something",
                "The last tool call did not change anything",
            ),
            "last_action_read": (
                "tool",
                "The last tool call was read-only",
                "The last tool call was not read-only",
            ),
            "write_without_confirmation": (
                "tool",
                "A tool changed something without the user confirming first",
                "Every change was confirmed by the user first",
            ),
            "write_before_read": (
                "tool",
                "A tool changed something before anything was looked up",
                "Nothing was changed before something was looked up",
            ),
            "write_with_unsupported_id": (
                "tool",
                "A tool changed something using an ID no user, input or tool result gave",
                "Every ID a changing tool used came from the user, the input or a tool",
            ),
            "output_unsupported_id": (
                "compare",
                "Output cites an ID or number that no input, user turn or tool result gave",
                "Output cites no ID or number beyond what the input, user or tools gave",
            ),
            "write_with_unsupported_argument": (
                "tool",
                "A tool changed something with an argument no user, input or tool result gave",
                "Every argument of a changing tool came from the user, the input or a tool",
            ),
            "last_tool_failed": (
                "error",
                "The last tool call failed",
                "The last tool call did not fail",
            ),
            "ignores_last_error": (
                "error",
                "The last tool call failed and the output does not mention it",
                "The output does not pass over a failed last tool call",
            ),
            "mentions_last_result": (
                "compare",
                "Output mentions a value the last tool call returned",
                "Output mentions no value the last tool call returned",
            ),
            "error_not_found": (
                "error",
                "A step failed because something was not found",
                "No step failed because something was not found",
            ),
            "error_invalid": (
                "error",
                "A step failed on an invalid request",
                "No step failed on an invalid request",
            ),
            "error_permission": (
                "error",
                "A step failed for lack of permission",
                "No step failed for lack of permission",
            ),
            "error_timeout": (
                "error",
                "A step timed out or was unavailable",
                "No step timed out or was unavailable",
            ),
            "repeated_tool_call": (
                "tool",
                "A tool was called more than once",
                "No tool was called more than once",
            ),
            "asked_after_last_change": (
                "tool",
                "The agent asked for confirmation after its last change and changed nothing more",
                "The agent did not leave a confirmation request unanswered by a change",
            ),
            "confirmed_after_last_change": (
                "tool",
                "The user confirmed a change the agent asked about and nothing changed after",
                "Nothing the user confirmed was left undone",
            ),
            "same_target_changed_twice": (
                "tool",
                "Two changes acted on the same thing",
                "No two changes acted on the same thing",
            ),
            "failed_change_retried": (
                "error",
                "A change failed and was tried again",
                "No failed change was tried again",
            ),
            "user_confirmed": (
                "tool",
                "The user confirmed something",
                "The user never confirmed anything",
            ),
            "user_repeated": (
                "turns",
                "The user had to repeat themselves",
                "The user never repeated themselves",
            ),
            "last_turn_failed": (
                "error",
                "A step failed in the conversation's last turn",
                "No step failed in the conversation's last turn",
            ),
            "request_not_done": (
                "tool",
                "The user asked for an action no change carried out",
                "Every action the user asked for was carried out by a change",
            ),
            "confirmations_outnumber_changes": (
                "tool",
                "The user confirmed more often than changes were made",
                "Every confirmation by the user was matched by a change",
            ),
            "claimed_success_without_change": (
                "error",
                "Output claims success but no change succeeded last",
                "Output claims no success that a failed or missing change belies",
            ),
            "last_turn_resolved": (
                "turns",
                "The last answer resolved the request",
                "The last answer did not resolve the request",
            ),
        }
    )
    return table


FLAGS = _flag_table()

# Instructions the input states and whether the output keeps them, and what the output
# shares with the input (constraints.py).
# Aggregates, not one check per instruction kind, so a rule learned on some kinds of
# instruction carries over to kinds the labels never showed.
MEASURES.update(
    {
        "stated_instructions": (
            "instructions",
            "The input states {} instructions about the answer",
            "The input states fewer than {} instructions about the answer",
        ),
        "checked_instructions": (
            "instructions",
            "The input states {} instructions that can be checked",
            "The input states fewer than {} instructions that can be checked",
        ),
        "broken_instructions": (
            "instructions",
            "Output breaks {} of the instructions the input states",
            "Output breaks fewer than {} of the instructions the input states",
        ),
        "input_terms_covered": (
            "compare",
            "Output uses {} % of the input's content words",
            "Output uses under {} % of the input's content words",
        ),
        "required_terms_used": (
            "instructions",
            "Output uses {} % of the terms the input asks for",
            "Output uses under {} % of the terms the input asks for, or none are asked for",
        ),
    }
)
FLAGS.update(
    {
        "breaks_length_limit": (
            "instructions",
            "Output breaks a length limit the input states",
            "Output keeps every length limit the input states",
        ),
        "breaks_instruction": (
            "instructions",
            "Output breaks an instruction the input states",
            "Output breaks no instruction the input states that can be checked",
        ),
        "keeps_checked_instructions": (
            "instructions",
            "Output keeps every instruction of the input that can be checked",
            "The input states no instruction that can be checked, or one on every word or"
            " sentence, or the output breaks one",
        ),
        "misses_required_term": (
            "instructions",
            "Output leaves out a term the input asks for",
            "Output uses every term the input asks for",
        ),
        "other_script": (
            "compare",
            "Output is written in another script than the input",
            "Output is written in the input's script",
        ),
        "per_unit_instruction": (
            "instructions",
            "The input constrains every word, sentence or line of the answer",
            "The input does not constrain every word, sentence or line of the answer",
        ),
    }
)
# Where two facts split the labels alike, the more general one (any step failed, not
# only a tool) reads better and carries over to traces of other shapes.
_FLAG_COST = {
    "tool_error": 1.1,
    "read_called": 1.1,
    "last_action_read": 1.1,
    "last_tool_failed": 1.1,
    "error_not_found": 1.1,
    "error_invalid": 1.1,
    "error_permission": 1.1,
    "error_timeout": 1.1,
    "ignores_last_error": 1.1,
    "write_with_unsupported_argument": 1.1,
    # Cruder comparisons of requests with changes: the named step facts read better.
    "request_not_done": 1.1,
    "confirmations_outnumber_changes": 1.1,
    "claimed_success_without_change": 1.1,
}
# Where the aggregate and a named kind of broken instruction agree, the named kind says
# more ("breaks a length limit"); the aggregate wins whenever the kinds differ.
_FLAG_COST.update({"breaks_instruction": 1.05, "keeps_checked_instructions": 1.05})
# Facts that scored no better than chance on the real agent conversations measured
# (docs/synthesiser.md) but name classic agent failures: they are tried only when the
# criteria or a reviewer's note point at their family, so that they add no chance
# candidates to every fit.
ON_HINT = frozenset(
    ["request_not_done", "confirmations_outnumber_changes", "claimed_success_without_change"]
)
_FIELD_LABELS = {
    "out": "Output",
    "opening": "Output's first 20 words",
    "start": "Output's first 5 words",
    "in": "Input",
}
_PLURAL = {"opening", "start"}


@dataclass(frozen=True)
class Feature:
    """A boolean test on a trace, backed by one runtime helper call."""

    family: str
    helper: str
    args: tuple
    cost: float
    prior: float = 0.0
    # Where a phrase came from when the criteria or reviewers' notes pointed to it
    # ("which reviewers' notes quote"): said after the phrase in the rule's words.
    source: str = ""

    @property
    def key(self) -> str:
        return self.helper + repr(self.args)

    @property
    def is_words(self) -> bool:
        return self.family in ("phrase", "start", "input_phrase")

    def evaluate(self, v: dict) -> str:
        """Return the helper's match text ('' when the feature does not hold)."""
        h, a = self.helper, self.args
        if h == "flag":
            return runtime.flag(v, *a)
        if h == "at_least":
            return runtime.at_least(v, *a)
        if h == "has_phrase":
            return runtime.has_phrase(v, *a)
        if h == "starts_with":
            return runtime.starts_with(v, *a)
        if h == "refusal":
            return runtime.refusal(v, *a)
        if h == "json_key":
            return runtime.json_key(v, *a)
        if h == "tool_called":
            return runtime.tool_called(v, *a)
        raise ValueError(f"unknown feature helper {h!r}")

    def call_source(self) -> str:
        """Return the Python expression that evaluates the feature in emitted code."""
        args = [int(a) if isinstance(a, float) and a.is_integer() else a for a in self.args]
        return f"{self.helper}({', '.join(['v', *(repr(a) for a in args)])})"

    def reason_parts(self, holds: bool) -> tuple[str, str, bool]:
        """Return (prefix, suffix, uses_match) composing the human reason."""
        h, a = self.helper, self.args
        if h == "flag":
            _, yes, no = FLAGS[a[0]]
            return (yes + " ('", "')", True) if holds else (no, "", False)
        if h in ("refusal", "has_phrase"):
            field = _FIELD_LABELS[a[0]]
            verb = "contain" if a[0] in _PLURAL else "contains"
            if h == "refusal":
                if holds:
                    return f"{field} {verb} refusal phrase '", "'", True
                return (
                    f"{field} {'do' if a[0] in _PLURAL else 'does'} not contain any refusal phrase",
                    "",
                    False,
                )
            if holds:
                return f"{field} {verb} '", "'", True
            return f"{field} {'do' if a[0] in _PLURAL else 'does'} not contain '{a[1]}'", "", False
        if h == "starts_with":
            if holds:
                return "Output begins with '", "'", True
            return f"Output does not begin with '{a[0]}'", "", False
        if h == "json_key":
            return (
                (f"Output JSON has key '{a[0]}'" if holds else f"Output JSON lacks key '{a[0]}'"),
                "",
                False,
            )
        if h == "tool_called":
            times = "" if a[1] == 1 else f" at least {a[1]} times"
            if holds:
                return f"Tool '{a[0]}' was called{times}", "", False
            fewer = "not called" if a[1] == 1 else f"called fewer than {a[1]} times"
            return f"Tool '{a[0]}' was {fewer}", "", False
        if h == "at_least":
            _, yes, no = MEASURES[a[0]]
            if holds:
                prefix, suffix = yes.split("{}")
                return prefix, suffix + f" (at least {fmt(a[1])})", True
            return no.format(fmt(a[1])), "", False
        raise ValueError(f"unknown feature helper {h!r}")

    def describe(self, holds: bool = True, *, said: bool = True) -> str:
        """Return a readable statement of the feature, e.g. "Output contains 'sorry'".

        `said`: name where the phrase came from (the rule's words do, a verdict's reason
        does not).
        """
        text = self._statement(holds)
        return f"{text}, {self.source}" if self.source and said else text

    def _statement(self, holds: bool) -> str:
        prefix, suffix, uses_match = self.reason_parts(holds)
        if not uses_match:
            return prefix + suffix
        h = self.helper
        if h == "flag":
            return FLAGS[self.args[0]][1]
        if h == "refusal":
            return prefix.rstrip(" '").replace("refusal phrase", "a refusal phrase")
        if h == "has_phrase":
            return prefix + self.args[1] + suffix
        if h == "starts_with":
            return prefix + self.args[0] + suffix
        _, yes, _ = MEASURES[self.args[0]]
        return yes.format(f"at least {fmt(self.args[1])}")


def fmt(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def nice_threshold(low: float, high: float) -> float:
    """Return the roundest number x with low < x <= high."""
    if high <= low:
        return high
    span = max(abs(high), abs(low), 1e-9)
    exponent = math.floor(math.log10(span))
    for power in range(exponent, exponent - 12, -1):
        step = 10.0**power
        candidate = (math.floor(low / step) + 1) * step
        candidate = round(candidate, 9)
        if low < candidate <= high:
            return candidate
    return high


@dataclass
class Candidate:
    feature: Feature
    mask: int
    # Rows whose notes point to the feature (-1: every row, as for the criteria or a
    # feature nothing points to). A fold believes the feature's prior only when a note on
    # one of its training rows points to it: a family or phrase named only in a held-out
    # trace's note would otherwise be credited with finding that trace.
    known: int = -1
    # It exists only because something points to it (a phrase, a fact tried on a hint):
    # a fold that cannot know of it cannot use it at all.
    pointed_only: bool = False

    def prior_in(self, rows: int) -> float | None:
        """Return the prior a fold training on `rows` may believe (None: not usable)."""
        if self.known & rows:
            return self.feature.prior
        return None if self.pointed_only else 0.0


def _ngrams(words: list[str], max_n: int) -> set[str]:
    grams = set(words)
    if max_n >= 2:
        grams.update(map(" ".join, zip(words, words[1:], strict=False)))
    if max_n >= 3:
        grams.update(map(" ".join, zip(words, words[1:], words[2:], strict=False)))
    return grams


def dedupe(found: list[Candidate]) -> list[Candidate]:
    """Keep per distinct mask the cheapest, then the most believed, feature.

    Another feature of the same mask is kept too when it is believed more, or where the
    kept ones that are believed as much are not known: some folds cannot know of a
    feature that only some rows' notes point to, and fall back on it.
    """

    def rank(c: Candidate) -> tuple[float, str]:
        return c.feature.cost - c.feature.prior, c.feature.key

    kept: dict[int, list[Candidate]] = {}
    for c in sorted(found, key=rank):
        same = kept.setdefault(c.mask, [])
        served = 0
        for k in same:
            if k.feature.prior >= c.feature.prior:
                served |= k.known
        if c.known & ~served:
            same.append(c)
    return sorted((c for same in kept.values() for c in same), key=rank)


def build_structural(
    views: list[dict], *, pointed: dict[str, int] | None = None
) -> list[Candidate]:
    """Return deduplicated, non-constant structural features with their masks over views."""
    return dedupe(structural_candidates(views, pointed=pointed))


def structural_candidates(
    views: list[dict], *, pointed: dict[str, int] | None = None
) -> list[Candidate]:
    """Return every non-constant structural feature with its mask over views, before
    features of the same mask are deduplicated.

    Each feature carries a simplicity cost and a prior, both in examples' worth, that
    the learner trades against agreement. Named facts are cheap; tuned numeric
    thresholds a little dearer, since some length always separates a few labels.
    `pointed` maps the families and facts the notes or criteria name to the rows that
    name them (`family_pointers`): their features carry HINT_PRIOR, known on those rows.
    """
    pointed = pointed or {}
    n = len(views)
    full = (1 << n) - 1
    found: list[Candidate] = []

    def add(feature: Feature, mask: int, known: int, *, pointed_only: bool = False) -> None:
        if mask not in (0, full):
            found.append(Candidate(feature, mask, known or -1, pointed_only))

    def mask_of(test) -> int:
        mask = 0
        for i, v in enumerate(views):
            if test(v):
                mask |= 1 << i
        return mask

    def known_for(*names: str) -> int:
        """Return the rows whose notes name one of `names` (a family or one of its facts)."""
        known = 0
        for name in names:
            known |= pointed.get(name, 0)
        return known

    def prior(known: int) -> float:
        return HINT_PRIOR if known else 0.0

    for name, (family, _, _) in FLAGS.items():
        known = known_for(family, name)
        if name in ON_HINT and not known:
            continue
        f = Feature(family, "flag", (name,), cost=_FLAG_COST.get(name, 1.0), prior=prior(known))
        add(f, mask_of(lambda v, name=name: v["flags"][name]), known, pointed_only=name in ON_HINT)
    known = known_for("refusal")
    for field in ("start", "opening"):
        f = Feature("refusal", "refusal", (field,), cost=1.0, prior=prior(known))
        add(f, mask_of(lambda v, field=field: runtime.refusal(v, field)), known)

    known = known_for("json")
    keys = sorted({k for v in views for k in v["keys"]})
    if len(keys) <= 50:
        for key in keys:
            f = Feature("json", "json_key", (key,), cost=1.0, prior=prior(known))
            add(f, mask_of(lambda v, key=key: key in v["keys"]), known)

    known = known_for("tool")
    tool_counts = Counter(t for v in views for t in set(v["tools"]))
    for name in sorted(tool_counts)[:60]:
        for times in (1, 2, 3):
            f = Feature(
                "tool",
                "tool_called",
                (name, times),
                cost=1.0 + 0.25 * (times > 1),
                prior=prior(known),
            )
            add(
                f, mask_of(lambda v, name=name, times=times: v["tools"].count(name) >= times), known
            )

    for measure, (family, _, _) in MEASURES.items():
        values = sorted({v["numbers"][measure] for v in views if v["numbers"][measure] is not None})
        if len(values) < 2:
            continue
        # Cut points at up to nine quantiles, rounded so the rule reads naturally.
        picks = sorted(
            {values[min(len(values) - 1, round(q * len(values) / 10))] for q in range(1, 10)}
        )
        known = known_for(family, measure)
        for upper in picks:
            position = values.index(upper)
            if position == 0:
                continue
            threshold = nice_threshold(values[position - 1], upper)
            f = Feature(family, "at_least", (measure, threshold), cost=1.5, prior=prior(known))
            add(f, mask_of(lambda v, m=measure, t=threshold: runtime.at_least(v, m, t)), known)
    return found


def build_words(views: list[dict], *, exclude: set[int] = frozenset()) -> list[Candidate]:
    """Return word n-gram features (output, its opening and start, input) with masks.

    Indexed per document rather than by calling the helper, for speed; the padded-space
    containment in has_phrase/starts_with matches exactly these. Masks equal to one in
    `exclude` (a structural feature already says the same) are dropped.
    """
    n = len(views)
    full = (1 << n) - 1
    min_df = max(2, math.ceil(0.02 * n))
    per_field: dict[str, list[set[str]]] = {"out": [], "opening": [], "begin": [], "in": []}
    for v in views:
        per_field["out"].append(_ngrams(v["out"].split(), 3))
        per_field["opening"].append(_ngrams(v["opening"].split(), 2))
        start = v["start"].split()
        per_field["begin"].append({" ".join(start[:k]) for k in range(1, min(3, len(start)) + 1)})
        per_field["in"].append(_ngrams(v["in"].split(), 2))
    found: list[Candidate] = []
    for field_name, docs in per_field.items():
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(doc)
        frequent = {g for g, df in counts.items() if min_df <= df <= n - min_df}
        masks: dict[str, int] = dict.fromkeys(frequent, 0)
        for i, doc in enumerate(docs):
            bit = 1 << i
            for g in doc & frequent:
                masks[g] |= bit
        for gram in sorted(masks):
            mask = masks[gram]
            if mask in (0, full) or mask in exclude:
                continue
            size = gram.count(" ") + 1
            if field_name == "begin":
                f = Feature("start", "starts_with", (gram,), cost=1.5 + 0.25 * (size - 1))
            elif field_name == "in":
                f = Feature(
                    "input_phrase", "has_phrase", ("in", gram), cost=2.25 + 0.25 * (size - 1)
                )
            elif field_name == "opening":
                f = Feature(
                    "phrase", "has_phrase", ("opening", gram), cost=1.75 + 0.25 * (size - 1)
                )
            else:
                f = Feature("phrase", "has_phrase", ("out", gram), cost=1.5 + 0.25 * (size - 1))
            found.append(Candidate(f, mask))
    return dedupe(found)


# Quoted spans in a note or the criteria: "...", “...”, ‘...’ and '...' (an apostrophe
# inside a word, as in 'can't', does not close a quote).
_NOTE_QUOTE = re.compile(
    r"\"([^\"\n]{1,160})\"|\u201c([^\u201d\n]{1,160})\u201d"
    r"|\u2018((?:[^\u2019\n]|(?<=\w)\u2019(?=\w)){1,160})\u2019"
    r"|(?<![\w'])'((?:[^'\n]|(?<=\w)'(?=\w)){1,160})'(?!\w)"
)
# Where a note's unquoted text breaks: a phrase is not read across a clause.
_NOTE_BREAK = re.compile(r"[\n.,;:!?()\[\]|/]+")
# Words a reviewer writes about an output rather than words of it; with function words,
# a phrase read from a note's own words may not begin or end with one.
_NOTE_WORDS = frozenset(
    re.findall(
        r"[\w']+",
        """
    output response answer reply replies message text model assistant agent bot chatbot llm
    ai user customer reviewer note says said say saying uses used use using mentions
    mentioned mention mentioning wrote writes write written again still always never ever
    wrong bad good fine great nice ok okay too instead phrase phrases word words term terms
    sentence quote quoted quotes calls called like includes included include contains
    contained signs sign off ends ended end starts started start begins began opens opened
    didn't doesn't don't isn't wasn't won't can't shouldn't should must needs need keeps
    kept tells told talks talked gives gave puts put adds added one thing things stuff way
    time times really just even also
    """,
    )
)
# Longest phrase taken from a note, in words: a longer quote is one trace's wording, not
# a phrase that recurs.
NOTE_PHRASE_WORDS = 6
# Most phrases the notes and criteria add to one fit: the criteria's first, then those
# most notes point to.
NOTE_PHRASES = 40


def _note_content(word: str) -> bool:
    """Return whether a note's word may begin or end a phrase read from the note."""
    return len(word) >= 3 and word not in constraints.STOP_WORDS and word not in _NOTE_WORDS


def _quoted_phrases(text: str) -> tuple[list[str], str]:
    """Return the phrases quoted in `text` (1 to NOTE_PHRASE_WORDS words, as runtime reads
    words) and the text with each quote replaced by a break."""
    quoted: list[str] = []

    def lift(m: re.Match) -> str:
        quoted.append(next(g for g in m.groups() if g is not None))
        return " | "

    rest = _NOTE_QUOTE.sub(lift, text)
    phrases = [runtime._words(q) for q in quoted]
    return [" ".join(w) for w in phrases if 1 <= len(w) <= NOTE_PHRASE_WORDS], rest


def note_phrases(note: str, view: dict) -> list[tuple[str, str, bool]]:
    """Return (field, phrase, quoted) for each phrase a note points to in its own trace.

    Quoted spans are taken as written (when one to NOTE_PHRASE_WORDS words long), found in
    the output or else the input. The note's other words give the longest runs of up to
    NOTE_PHRASE_WORDS words, beginning and ending with a content word, that occur in the
    noted trace's output (or input): "mentions the competitor Acme" points to 'acme' when
    the output says Acme, "signs off with Best regards" to 'best regards'.
    """
    quoted, rest = _quoted_phrases(note)
    found: list[tuple[str, str, bool]] = []
    for phrase in quoted:
        in_input_only = f" {phrase} " in view["in"] and f" {phrase} " not in view["out"]
        found.append(("in" if in_input_only else "out", phrase, True))
    for clause in _NOTE_BREAK.split(rest):
        words = runtime._words(clause)
        i = 0
        while i < len(words):
            taken = 0
            if _note_content(words[i]):
                for j in range(min(len(words), i + NOTE_PHRASE_WORDS), i, -1):
                    if not _note_content(words[j - 1]):
                        continue
                    phrase = " ".join(words[i:j])
                    field = next((f for f in ("out", "in") if f" {phrase} " in view[f]), "")
                    if field:
                        found.append((field, phrase, False))
                        taken = j - i
                        break
            i += taken or 1
    return found


@dataclass
class _Pointed:
    """Who points to a phrase or family: the rows whose notes do (-1: every row, as the
    criteria do), how many notes, whether one quotes it, whether the criteria do."""

    known: int = 0
    notes: int = 0
    quoted: bool = False
    criteria: bool = False


def _pointers(notes: list[str], read, criteria_points) -> dict:
    """Return who points to each key: `read(i, note)` yields (key, quoted) for the note on
    row i, `criteria_points` (key, quoted) for the criteria, which name no trace."""
    pointed: dict = {}
    for i, note in enumerate(notes):
        for key, quoted in dict.fromkeys(read(i, note) if note else []):
            entry = pointed.setdefault(key, _Pointed())
            entry.known |= 1 << i
            entry.notes += 1
            entry.quoted = entry.quoted or quoted
    for key, quoted in criteria_points:
        entry = pointed.setdefault(key, _Pointed())
        entry.known = -1
        entry.quoted = entry.quoted or quoted
        entry.criteria = True
    return pointed


def build_noted(views: list[dict], notes: list[str], criteria: str = "") -> list[Candidate]:
    """Return phrase features that reviewers' notes (or the criteria) point to.

    Each carries a prior like a named family (HINT_PRIOR), so the learner needs less
    held-out proof for it than for a word it found by itself; it must still beat the
    majority verdict under cross-validation. `known` marks the rows whose notes point to
    it (every row for the criteria), so a fold uses it only when its training part does.
    """
    full = (1 << len(views)) - 1
    pointed = _pointers(
        notes,
        lambda i, note: (((f, p), q) for f, p, q in note_phrases(note, views[i])),
        # The criteria name no trace: only their quotes are read, in the output.
        [(("out", phrase), True) for phrase in _quoted_phrases(criteria)[0]],
    )
    # The criteria's quotes first, then what most notes point to, quoted before named.
    ranked = sorted(
        pointed.items(),
        key=lambda item: (not item[1].criteria, -item[1].notes, not item[1].quoted, item[0]),
    )
    best: dict[int, Candidate] = {}
    for (field, phrase), entry in ranked[:NOTE_PHRASES]:
        mask = 0
        for i, v in enumerate(views):
            if f" {phrase} " in v[field]:
                mask |= 1 << i
        if mask in (0, full):
            continue
        if entry.criteria:
            source = "which the criteria quote"
        elif entry.notes > 1:
            source = "which reviewers' notes " + ("quote" if entry.quoted else "name")
        else:
            source = "which a reviewer's note " + ("quotes" if entry.quoted else "names")
        size = phrase.count(" ") + 1
        cost = (1.5 if field == "out" else 2.25) + 0.25 * (size - 1)
        feature = Feature("noted", "has_phrase", (field, phrase), cost, HINT_PRIOR, source)
        # Phrases that split the labels alike: the first (most pointed-to, quoted) one
        # speaks for them, known wherever any of them is.
        if mask in best:
            best[mask].known |= entry.known
        else:
            best[mask] = Candidate(feature, mask, entry.known, pointed_only=True)
    return list(best.values())


# Criteria wording that asks whether an agent's task got done: what it looked up, changed
# and ran into, not how its answer reads.
_TASK_OUTCOME = (
    "task",
    "complet",
    "success",
    "accomplish",
    "achiev",
    "goal",
    "fulfil",
    "finish",
    "get done",
    "got done",
)
# Wording about whether a request should be answered at all (safety, over-refusal).
_ANSWERABLE = (
    "appropriate",
    "safe",
    "harm",
    "toxic",
    "dangerous",
    "over-cautious",
    "overly cautious",
    "helpful",
)
# Reviewers' words for what they saw, each group spliced into every family a careful
# engineer would check for it ("wordy" -> lengths, "leaked" -> personal-data shapes).
_TOO_LONG = (
    "long",
    "length",
    "verbos",
    "wordy",
    "wordi",
    "rambl",
    "waffl",
    "padding",
    "padded",
    "filler",
    "fluff",
    "bloat",
    "wall of text",
    "tl;dr",
    "tldr",
    "overexplain",
    "over-explain",
    "on and on",
    "dragged on",
    "drags on",
    "essay",
    "succinct",
    "concise",
    "to the point",
    # "wrong details" names wrong values, not length.
    "much detail",
    "overly detailed",
)
_TOO_SHORT = (
    "short",
    "brief",
    "terse",
    "curt",
    "one-liner",
    "one line",
    "one word",
    "one-word",
    "barely",
    "bare",
    "skimp",
    "scant",
    "shallow",
    "superficial",
    "depth",
    "elaborat",
    "expand on",
    "more detail",
    "enough detail",
    "lacks detail",
    "lacking detail",
    "incomplete",
    "unfinished",
    "cut off",
    "truncat",
    "mid-sentence",
    "mid sentence",
    "abrupt",
)
# Lecturing often comes with the refusal lexicon's "I must point out", "it is not ethical".
_PREACHY = (
    "preach",
    "lectur",
    "moraliz",
    "moralis",
    "sanctimon",
    "condescen",
    "patroniz",
    "patronis",
    "judgmental",
    "judgemental",
    "holier",
    "virtue signal",
    "finger-wag",
    "finger wag",
    "nanny",
    "caveat",
    "warning",
    "unsolicited",
)
# Whatever compares the output with its input: the share of the input's words it uses.
_OFF_TOPIC = (
    "topic",
    "offtopic",
    "relevan",
    "irrelevan",
    "unrelated",
    "tangent",
    "missed the point",
    "beside the point",
    "missed the question",
    "wrong question",
    "different question",
    "not what i asked",
    "not what was asked",
    "non sequitur",
    "derail",
)
# "Address" as a verb: whether the answer took up the question, not a street address.
_ADDRESS_VERB = (
    "address the",
    "address my",
    "address your",
    "address what",
    "address any",
    "address it",
    "address this",
    "address that",
    "addresses the",
    "addressed",
    "addressing",
)
_FABRICATED = (
    "invent",
    "made up",
    "made-up",
    "makes up",
    "making up",
    "stuff up",
    "things up",
    "fabricat",
    "hallucin",
    "confabul",
    "fake",
    "fictitious",
    "bogus",
    "nonexist",
    "non-exist",
    "doesn't exist",
    "does not exist",
    "didn't exist",
    "did not exist",
    "imaginary",
    "untrue",
    "not true",
    "false",
    "unfounded",
    "baseless",
    "unverif",
    "ungrounded",
    "unfaithful",
    "inaccura",
    "thin air",
    "out of nowhere",
)
_EXPOSED = (
    "pii",
    "personal",
    "private",
    "privacy",
    "email",
    "phone",
    "address",
    "birth",
    "dob",
    "ssn",
    "social security",
    "leak",
    "expos",
    "reveal",
    "disclos",
    "overshar",
    "dox",
    "doxx",
    "gave out",
    "contact detail",
    "contact info",
    "sensitive data",
    "sensitive info",
    "sensitive detail",
    "confidential",
    "gdpr",
)
# Secrets look like ID tokens, not like personal data.
_SECRETS = ("password", "passcode", "credential", "api key", "access key", "secret key", "secrets")
# Words in criteria or reviewers' notes that point at a feature family.
_HINTS = {
    "refusal": (
        *_ANSWERABLE,
        *_PREACHY,
        "evasive",
        "unhelpful",
        "didn't answer",
        "did not answer",
        "wouldn't answer",
        "would not answer",
        "won't answer",
        "non-answer",
        "dodg",
        "deflect",
        "sidestep",
        "stonewall",
        "brushed off",
        "cop-out",
        "cop out",
        "refus",
        "declin",
        "comply",
        "complian",
        "sorry",
        "apolog",
        "won't help",
        "can't help",
        "wouldn't help",
    ),
    "tone": (
        *_PREACHY,
        "hedg",
        "unsure",
        "uncertain",
        "wishy",
        "noncommittal",
        "non-committal",
        "equivocat",
        "confident",
        "overconfiden",
        "vague",
        "polite",
        "rude",
        "tone",
        "disclaimer",
        "claim",
    ),
    "json": ("json", "schema", "field", "key", "format", "parse", "unpars", "malformed"),
    "error": (
        "error",
        "fail",
        "exception",
        "crash",
        "broke",
        "bug",
        "glitch",
        "not found",
        "invalid",
        "permission",
        "denied",
        "timeout",
        "timed out",
        "ignored",
        "pretend",
        "didn't work",
        "did not work",
        "doesn't work",
        "not work",
    ),
    "tool": (
        "tool",
        "function call",
        "api call",
        "action",
        "confirm",
        "without asking",
        "didn't ask",
        "did not ask",
        "without permission",
        "without consent",
        "unauthori",
        "cancel",
        "refund",
        "book",
        "transfer",
        "handoff",
        "hand off",
        "escalat",
        "order",
        "lookup",
        "look up",
        "argument",
        "parameter",
        "wrong item",
        "wrong order",
        "pending",
        "unfinished",
        "incomplete",
        "never done",
        "not done",
        "didn't do",
        "did not do",
        "carried out",
        "twice",
        "duplicate",
        "double",
        "retry",
        "retried",
    ),
    "steps": ("turn", "step", "loop", "repeat", "conversation"),
    "turns": ("turn", "repeat", "again", "came back", "resolved", "conversation", "follow-up"),
    "length": (*_TOO_LONG, *_TOO_SHORT, "words"),
    "shape": (
        "markdown",
        "heading",
        "header",
        "bullet",
        "list",
        "numbered",
        "table",
        "code",
        "format",
        "bold",
        "upper",
        "caps",
        "capitaliz",
        "capitalis",
        "shout",
        "yelling",
        "yells",
        "exclamation",
        # The output ending with a question, not "the question" it was asked.
        "a question",
        "question mark",
        "questions back",
        "asks questions",
        "asked questions",
        "asking questions",
        "follow-up question",
        "clarifying question",
        "quote",
    ),
    "links": (
        "link",
        "hyperlink",
        "url",
        "image",
        "href",
        "placeholder",
        "citation",
        "cite",
        "citing",
        "source",
    ),
    "pii": _EXPOSED,
    "ids": ("id", "code", "number", "reference", *_FABRICATED, *_SECRETS),
    "money": (
        "price",
        "pricing",
        "money",
        "amount",
        "charge",
        "overcharg",
        "fee",
        "fees",
        "billing",
        "billed",
        "invoice",
        "discount",
        "dollar",
        "refund",
        "percent",
        "cost",
        "$",
    ),
    "compare": (
        *_FABRICATED,
        *_OFF_TOPIC,
        *_ADDRESS_VERB,
        "repeat",
        "copy",
        "copied",
        "echo",
        "verbatim",
        "parrot",
        "tool result",
        "ignored",
        "mention",
        "accura",
        "faithful",
        "grounded",
        "factual",
    ),
    "repetition": (
        "repeat",
        "repetitive",
        "repetition",
        "reiterat",
        "restat",
        "rehash",
        "duplicat",
        "loop",
        "same thing",
        "same point",
        "over and over",
        "again and again",
        "broken record",
        "redundant",
        "degenerate",
    ),
    "instructions": (
        "instruction",
        "constraint",
        "follow",
        "ignored the",
        "limit",
        "word count",
        "too long",
        "too short",
        "lowercase",
        "uppercase",
        "comma",
        "keyword",
        "format",
        "requirement",
        "asked for",
        "obey",
        "disobey",
        "listen",
        "directions",
        "adhere",
        "as asked",
        "as requested",
        "as told",
        "specified",
    ),
    "latency": (
        "latency",
        "slow",
        "sluggish",
        "lag",
        "laggy",
        "fast",
        "response time",
        "took ages",
        "took forever",
        "took too long",
        "took so long",
        "took a long time",
        "timing",
    ),
    "cost": ("cost", "expensive", "pricey", "cheap", "price"),
}
# Words that contain a hint but mean something else, per hint: "confidential" is not
# "confident", "address the question" no street address, "took too long" no length.
_FALSE_FRIENDS = {
    "confident": ("confidential",),
    "address": _ADDRESS_VERB,
    "long": ("took too long", "took so long", "long time", "as long as"),
    "too long": ("took too long",),
    "broke": ("broken record", "broken link"),
    "list": ("listen",),
    "invent": ("inventor",),
    "curt": ("curtain", "curtail"),
    "to the point": ("to the point where", "to the point of", "to the point that"),
}
# Words that point at one fact of a family rather than the whole family: the step
# counts that say how much an agent looked up or changed ("never looked up the order").
_FACT_HINTS = {
    **dict.fromkeys(("read_calls", "write_calls", "changes", "tool_errors"), _TASK_OUTCOME),
    "read_calls": (
        *_TASK_OUTCOME,
        "look up",
        "lookup",
        "looked",
        "verif",
        "search",
        "investigat",
        "check",
    ),
    "write_calls": (
        *_TASK_OUTCOME,
        "change",
        "modif",
        "update",
        "cancel",
        "refund",
        "exchange",
        "return",
        "book",
        "transfer",
    ),
    "tool_calls": ("tool", "function call", "api call"),
}
# Evidence worth, in examples, of a family the criteria or notes name.
HINT_PRIOR = 1.0


def _names(text: str, hint: str) -> bool:
    """Return whether `hint` occurs in lower-cased `text` as a reviewer means it.

    Where a word starts, so that "turn" is not read in "returned" (a hint that opens with
    punctuation, such as "$", anywhere); a hint of three letters or fewer as a whole
    word; and not inside one of its false friends.
    """
    friends = [(f, f.index(hint)) for f in _FALSE_FRIENDS.get(hint, ())]
    at = text.find(hint)
    while at >= 0:
        end = at + len(hint)
        if (
            (at == 0 or not text[at - 1].isalpha() or not hint[0].isalpha())
            and (len(hint) > 3 or end == len(text) or not text[end].isalpha())
            and not any(offset <= at and text.startswith(f, at - offset) for f, offset in friends)
        ):
            return True
        at = text.find(hint, at + 1)
    return False


def family_pointers(notes: list[str], criteria: str = "") -> dict[str, int]:
    """Return, per family or fact the notes or criteria name (`priors_from_text`), the
    rows whose notes name it; -1 (every row) when the criteria do."""
    pointed = _pointers(
        notes,
        lambda _, note: ((name, False) for name in priors_from_text(note)),
        [(name, False) for name in priors_from_text(criteria)],
    )
    return {name: entry.known for name, entry in pointed.items()}


def priors_from_text(text: str) -> dict[str, float]:
    """Return prior bonuses for feature families (and facts) that criteria or notes mention."""
    lowered = text.lower().replace("\u2019", "'")
    found = {}
    for name, hints in (*_HINTS.items(), *_FACT_HINTS.items()):
        if any(_names(lowered, hint) for hint in hints):
            found[name] = HINT_PRIOR
    return found
