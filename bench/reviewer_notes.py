"""Reviewer-style notes for training traces labelled bad, for bench/generation.py --notes.

The shared data carries no human notes, but each set records what a reviewer of it
really knows when judging a trace: which instruction a benchmark's verifier found broken
(IFBench), which changes the task called for and which the agent made (tau2: the gold
actions), how annotators classed a completion and whether its prompt was safe (XSTest).
`reviewer_note` turns that into the short note a person would write ("ignored the
word-count limit", "never cancelled the pending order", "refused a safe question"),
never a description of a feature the synthesiser computes. Only training traces get
notes; the held-out traces a fit is scored on never do.
"""

import re
from dataclasses import replace

# IFBench instruction ids -> what a reviewer would write when the output breaks it.
_INSTRUCTION_NOTES = {
    "count:conjunctions": "didn't use the number of different conjunctions asked for",
    "count:keywords_multiple": "didn't use each keyword the number of times asked",
    "count:numbers": "used the wrong count of numbers",
    "count:person_names": "didn't mention as many names as asked",
    "count:pronouns": "used too few pronouns",
    "count:punctuation": "didn't use every punctuation mark as asked",
    "count:unique_word_count": "not enough unique words",
    "count:word_count_range": "ignored the word-count limit",
    "count:words_japanese": "ignored the word-count limit for the Japanese answer",
    "format:emoji": "didn't end sentences with an emoji as asked",
    "format:line_indent": "lines not indented the way asked",
    "format:list": "not formatted as the list asked for",
    "format:newline": "didn't put each word on its own line as asked",
    "format:no_bullets_bullets": "used bullets it was told not to use",
    "format:no_whitespace": "used whitespace when told not to",
    "format:options": "didn't answer with one of the options given",
    "format:output_template": "didn't follow the template given",
    "format:parentheses": "didn't nest the parentheses as asked",
    "format:quote_unquote": "quoted things it was told not to",
    "format:quotes": "didn't nest the quotes as asked",
    "format:sub-bullets": "missing the sub-bullets asked for",
    "format:thesis": "no thesis line formatted as asked",
    "format:title_case": "not in title case as asked",
    "ratio:overlap": "didn't keep the word overlap with the prompt asked for",
    "ratio:sentence_balance": "didn't balance the kinds of sentences as asked",
    "ratio:sentence_type": "wrong ratio of questions to statements",
    "ratio:sentence_words": "sentences not of the lengths asked",
    "ratio:stop_words": "too many stop words",
    "sentence:alliteration_increment": "alliteration didn't increase sentence by sentence",
    "sentence:increment": "sentences didn't grow by the number of words asked",
    "sentence:keyword": "keyword not in the sentence asked for",
    "words:alphabet": "words didn't go through the alphabet as asked",
    "words:consonants": "didn't use the consonant clusters asked for",
    "words:keywords_specific_position": "keyword not at the position asked",
    "words:last_first": "a sentence didn't start with the previous one's last word",
    "words:no_consecutive": "consecutive words start with the same letter",
    "words:odd_even_syllables": "ignored the syllable pattern",
    "words:palindrome": "didn't include the palindromes asked for",
    "words:paragraph_last_first": "paragraphs don't start and end with the same word",
    "words:prime_lengths": "used words whose lengths aren't prime",
    "words:repeats": "repeated words more than allowed",
    "words:start_verb": "didn't start with a verb",
    "words:vowel": "used vowels it was told not to",
    "words:words_position": "word not at the position asked",
}
_KIND_NOTES = {
    "count": "got a count the prompt asked for wrong",
    "format": "ignored the format asked for",
    "ratio": "ignored a ratio the prompt asked for",
    "repeat": "didn't repeat the request as asked",
    "sentence": "ignored the instruction about sentences",
    "words": "ignored the instruction about words",
    "custom": "didn't follow the output format asked for",
}
# Tool name prefixes that only look things up (the rest change something).
_READ_PREFIXES = ("get", "find", "list", "search", "calculate", "think", "lookup")


def _past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    if verb in ("transfer", "cancel"):
        return verb + ("red" if verb == "transfer" else "led")
    return verb + "ed"


def _action_words(tool: str) -> tuple[str, str]:
    """Return (past-tense verb, object) of a tool name: cancel_pending_order -> cancelled."""
    verb, *rest = tool.split("_")
    thing = " ".join(rest)
    if not thing:
        thing = "it"
    elif rest[0] not in ("to", "for", "from", "with"):
        thing = "the " + thing
    return _past(verb), thing


def _instruction_note(raw: dict) -> str:
    ids = (raw.get("metadata") or {}).get("instruction_id_list") or []
    kept = (raw.get("label_detail") or {}).get("strict_follow_instruction_list") or []
    notes = []
    for instruction, ok in zip(ids, kept, strict=False):
        if not ok:
            kind = instruction.split(":", 1)[0]
            notes.append(
                _INSTRUCTION_NOTES.get(instruction, _KIND_NOTES.get(kind, "ignored an instruction"))
            )
    return "; ".join(notes)


def _agent_note(raw: dict) -> str:
    """Compare the changes the agent made with those the task called for."""
    gold = [
        a
        for a in (raw.get("label_detail") or {}).get("gold_actions") or []
        if not a.get("name", "").startswith(_READ_PREFIXES)
    ]
    made = [
        (s.get("name") or "", s.get("input"))
        for s in raw.get("steps") or []
        if s.get("type") == "tool"
        and not (s.get("name") or "").startswith(_READ_PREFIXES)
        and not s.get("error")
    ]
    notes = []
    for action in gold:
        name, args = action["name"], action.get("arguments")
        if (name, args) in made:
            continue
        verb, thing = _action_words(name)
        if any(n == name for n, _ in made):
            notes.append(f"{verb} {thing} with the wrong details")
        else:
            notes.append(f"never {verb} {thing}")
    for name, _ in made:
        if not any(a["name"] == name for a in gold):
            verb, thing = _action_words(name)
            notes.append(f"{verb} {thing} though the customer didn't ask for that")
    if not notes:
        notes.append("told the customer something wrong")
    return "; ".join(dict.fromkeys(notes))


def _opening(raw: dict) -> str:
    """Return the first five words of the output's first sentence, as a reviewer quotes it."""
    output = raw.get("output")
    if isinstance(output, dict):
        output = " ".join(str(v) for v in output.values() if isinstance(v, str))
    sentence = re.split(r"(?<=[.!?])\s|\n", str(output or "").strip(), maxsplit=1)[0]
    return " ".join(sentence.split()[:5]).rstrip(".!?,;:")


def _safety_note(raw: dict, *, quotes: bool = False) -> str:
    detail = raw.get("label_detail") or {}
    final = str(detail.get("final_label", ""))
    unsafe = bool((raw.get("metadata") or {}).get("prompt_is_unsafe"))
    refused = "refusal" in final
    if raw.get("task") == "no_refusal":
        note = "only partly answered, hedged and held back" if "partial" in final else "refused"
    elif unsafe and not refused:
        note = "helped with a harmful request"
    elif refused and not unsafe:
        note = "refused a safe question"
    else:
        note = "answered inappropriately"
    opening = _opening(raw) if quotes else ""
    return f'{note}: "{opening}"' if opening else note


def reviewer_note(raw: dict, *, quotes: bool = False) -> str:
    """Return the note a reviewer would leave on a trace labelled bad ('' for good ones).

    With `quotes`, notes on XSTest completions quote the words that open the answer ("refused:
    "Sorry, but I can't assist""), where what made it bad is the answer's opening; the other
    sets' notes are about instructions and actions that no quote of the output shows.
    """
    if raw.get("label") != "negative":
        return ""
    detail = raw.get("label_detail") or {}
    if "strict_follow_instruction_list" in detail:
        return _instruction_note(raw)
    if "gold_actions" in detail:
        return _agent_note(raw)
    if "final_label" in detail:
        return _safety_note(raw, quotes=quotes)
    return ""


def with_notes(examples: list, *, quotes: bool = False, every: int = 1) -> list:
    """Return the examples with a reviewer's note on each one labelled bad (`every`: on
    every so many of them only, in order, as a busy reviewer writes)."""
    noted = []
    bad = 0
    for e in examples:
        if e.label == "negative":
            if bad % every == 0:
                e = replace(e, note=reviewer_note(e.raw, quotes=quotes))
            bad += 1
        noted.append(e)
    return noted
