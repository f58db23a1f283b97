"""Instructions stated in the input, and whether the output keeps them.

A prompt often states how the answer must look: "in at most 100 words", "all lowercase",
"no commas", "include the keywords 'x' and 'y'", "end with 'Any questions?'", "wrap the
answer in JSON". These patterns are general English, not one benchmark's wording. Each
stated instruction that can be checked is checked against the output; the facts the
learner sees are aggregates that carry over to instruction kinds it never saw: how many
instructions the input states, how many checked ones the output breaks, whether it
breaks a length limit, what share of the terms the input quotes the output uses, and
whether the input constrains every word or sentence (the hardest kind to keep).

Like runtime.py, this source is copied into every generated eval (codegen inlines it),
so it keeps to the eval allow-list: json and re only, no dunder names.
"""

import json
import re

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "fifty": 50,
    "hundred": 100,
}
_N = r"(\d[\d,]*|" + "|".join(_NUMBER_WORDS) + r")"
# Units an instruction can count, and the regular expression naming each.
_UNITS = (
    ("unique_words", r"(?:unique|distinct|different) words?"),
    ("words", r"words?"),
    ("sentences", r"sentences?"),
    ("paragraphs", r"paragraphs?"),
    ("bullets", r"(?:bullet(?:ed)?(?: points?)?|bullet-points?|list items?)"),
    ("lines", r"lines?"),
    ("characters", r"(?:characters?|chars?|letters?)"),
    ("sections", r"sections?"),
    ("highlights", r"highlighted sections?|highlights?"),
    ("placeholders", r"placeholders?"),
    ("numbers", r"numbers?|numerals?|digits?"),
)
_UNIT_RE = "(" + "|".join(pattern for _, pattern in _UNITS) + ")"
_AT_MOST = (
    r"at most|no more than|not more than|fewer than|less than|under|maximum of|a maximum of"
    r"|up to|not exceed(?:ing)?|shorter than|within"
)
_AT_LEAST = (
    r"at least|no less than|no fewer than|not less than|more than|over|minimum of"
    r"|a minimum of|longer than"
)
_LIMIT_RES = (
    ("between", re.compile(r"\bbetween " + _N + r" and " + _N + r" " + _UNIT_RE + r"\b")),
    ("max", re.compile(r"\b(?:" + _AT_MOST + r") " + _N + r" " + _UNIT_RE + r"\b")),
    ("min", re.compile(r"\b(?:" + _AT_LEAST + r") " + _N + r" " + _UNIT_RE + r"\b")),
    ("exact", re.compile(r"\bexactly " + _N + r" " + _UNIT_RE + r"\b")),
    (
        "exact",
        re.compile(
            r"\b(?:respond|answer|reply|write|use|in|with) (?:only )?"
            + _N
            + r" "
            + _UNIT_RE
            + r"(?! or)\b"
        ),
    ),
)
# How often a word (or a letter) must appear: "include keyword X twice", "the word X
# should appear at least 3 times", "use the word 'X' 3 times", "mention X at least
# twice", "'X' 3 or more times", "the letter q at most 5 times". A bare count ("X twice")
# is read as a minimum: only fewer is sure to break it.
_TIMES = r"(?:(?P<once>once|twice|thrice)|(?P<count>" + _N[1:-1] + r")(?P<more> or more)? times)"
_FREQUENCY = re.compile(
    r"(?:\b(?:(?P<what>key ?words?|words?|terms?|phrases?|letters?)"
    r"|(?P<verb>use|using|include|including|mention|mentioning|say|saying|repeat|repeating"
    r"|write|writing)(?: the)?)\s+|(?<!\w)(?=['\"\u201c]))"
    r"['\"\u201c]?(?P<term>[A-Za-z][\w-]*)['\"\u201d]?(?:,)?"
    r"(?:\s+(?:should|must|has to|needs to|to|will)?\s*"
    r"(?:appears?|occurs?|be used|is used|be included|be mentioned|be repeated))?"
    r"(?:\s+in (?:your|the) (?:response|answer|reply|output))?"
    r"\s+(?P<bound>at least|no fewer than|no less than|a minimum of|at most|no more than"
    r"|not more than|a maximum of|up to|less than|fewer than|more than|exactly|only)?\s*"
    + _TIMES
    + r"(?!\w)",
    re.IGNORECASE,
)
# "Do not use X more than twice": the count bounds the word from above.
_NEGATED = re.compile(r"(?:\bnot|n't|\bnever)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
# Sentences that state how the answer must look: they name the answer or use a modal or
# a quantifier about it.
_INSTRUCTION = re.compile(
    r"\b(?:your (?:response|answer|reply|output|essay|email|story|poem)|the (?:response|answer"
    r"|reply|output)|in (?:your|the) (?:response|answer)|must|should|make sure|ensure"
    r"|exactly|at least|at most|no more than|do not|don't|avoid|without|only use|use only"
    r"|include|wrap|format|end (?:it |your \w+ )?with|start (?:it |your \w+ )?with"
    r"|begin (?:it |your \w+ )?with|all (?:lowercase|lower case|uppercase|capital)|repeat"
    r"|(?:as|in) (?:valid )?json|json (?:format|object)|fewer than|less than|between \d+"
    r"|up to \d+|under \d+|within \d+|lower ?case|upper ?case|capital letters|title case"
    r"|commas?|whitespace|bullet|numbered list|postscript|p\.s|angular brackets"
    r"|(?:respond|answer|reply|write) (?:only )?(?:in|using|with))\b"
    # A count, an instruction when its sentence says how often to use a word
    # (`_instructions`): "use the word X 3 times" has no other cue.
    r"|\b(?P<count_cue>once|twice|thrice|times)\b",
    re.IGNORECASE,
)
# Instructions about every (or the n-th) word, sentence, line or paragraph of the answer.
_PER_UNIT = re.compile(
    r"\b(?:each|every|all(?: the)?|every \d+-?(?:st|nd|rd|th)|the \d+-?(?:st|nd|rd|th)"
    r"|(?:first|second|third|last) and (?:first|second|third|last)|consecutive)"
    r" (?:single |other |new )?(?:words?|sentences?|lines?|paragraphs?|bullets?|bullet points?)\b"
    r"|\bin the \d+-?(?:st|nd|rd|th) (?:sentence|paragraph|line)\b"
    # Parts compared with each other ("three sentences with the same number of words").
    r"|\bthe same number of (?:words|characters|letters|syllables|sentences|lines)\b"
    r"|\b\d+ ?%(?: \(.{1,8}\))? of (?:the |your )?(?:total |response'?s? )?(?:words|sentences)\b"
    r"|\bratio of \w+ (?:words |sentences )?to \w+",
    re.IGNORECASE,
)
_FORBIDDEN_CHARS = {
    "commas": ",",
    "comma": ",",
    "exclamation marks": "!",
    "exclamation points": "!",
    "question marks": "?",
    "semicolons": ";",
    "colons": ":",
    "hyphens": "-",
    "dashes": "-",
    "periods": ".",
    "full stops": ".",
    "quotation marks": '"',
    "asterisks": "*",
    "emojis": "emoji",
    "whitespace": "whitespace",
    "spaces": " ",
    "digits": "digit",
    "numbers": "digit",
}
_NO_CHAR = re.compile(
    r"\b(?:no|without(?: using)?(?: any)?|do not use(?: any)?|don't use(?: any)?|avoid(?: using)?"
    r"(?: any)?|not contain(?: any)?|refrain from using(?: any)?|free of)"
    r" (" + "|".join(sorted(_FORBIDDEN_CHARS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_QUOTED = re.compile(
    r"\"([^\"\n]{1,60})\"|\u201c([^\u201d\n]{1,60})\u201d|(?<!\w)'([^'\n]{1,40})'(?!\w)"
)
_KEYWORD = re.compile(
    r"\b(?:key ?words?|the words?|the terms?|the phrases?)\s+(?:['\"\u201c])?([A-Za-z][\w-]*)",
    re.IGNORECASE,
)
_ONCE = {"once": 1, "twice": 2, "thrice": 3}
_FORBID_WORD = re.compile(
    r"\b(?:do not|don't|never|avoid|without)\s+(?:use|using|include|including|mention"
    r"|mentioning|say|saying)\s+(?:the |any )?(?:words?|terms?|phrases?|keywords?)?\s*"
    r"['\"\u201c]?([A-Za-z][\w-]*(?: [\w-]+){0,3}?)['\"\u201d]?(?=[\s,.;]|$)",
    re.IGNORECASE,
)
_ENDS_WITH = re.compile(
    r"\b(?:end|finish|conclude)(?:s)? (?:your (?:\w+ )?(?:response|answer|reply|email|essay"
    r"|letter|story|poem)|it|the (?:response|answer))? ?with (?:the |this )?(?:exact |following )?"
    r"(?:phrase|word|sentence|question)?:?\s*['\"\u201c]([^'\"\u201d\n]{1,80})['\"\u201d]",
    re.IGNORECASE,
)
_STARTS_WITH = re.compile(
    r"\b(?:start|begin)(?:s)? (?:your (?:\w+ )?(?:response|answer|reply|email|essay|letter"
    r"|story|poem)|it|the (?:response|answer))? ?with (?:the |this )?(?:exact |following )?"
    r"(?:phrase|word|sentence)?:?\s*['\"\u201c]([^'\"\u201d\n]{1,80})['\"\u201d]",
    re.IGNORECASE,
)
_LOWER = re.compile(
    r"\b(?:all |entirely |only )?(?:in )?(?:lowercase|lower case|lower-case)(?: letters)?"
    r"(?: only)?\b",
    re.IGNORECASE,
)
_UPPER = re.compile(
    r"\b(?:all (?:capital|uppercase|upper case|caps)|in (?:all )?(?:capital letters|uppercase"
    r"|upper case|caps)|capital letters only|entirely in (?:capital|uppercase))\b",
    re.IGNORECASE,
)
_TITLE_CASE = re.compile(r"\btitle case\b", re.IGNORECASE)
_JSON = re.compile(r"\b(?:json)\b", re.IGNORECASE)
_BULLETS = re.compile(
    r"\b(?:bullet(?:ed)? (?:points?|list)|markdown bullets?|as a list|in a list)\b", re.IGNORECASE
)
_NUMBERED = re.compile(r"\bnumbered list\b", re.IGNORECASE)
_NO_BULLETS = re.compile(
    r"\b(?:no|without|do not use|don't use|avoid) (?:any |the )?"
    r"(?:bullet|lists?|markdown)",
    re.IGNORECASE,
)
_TITLE = re.compile(r"<<[^>\n]*>>")
_DOUBLE_QUOTES = re.compile(
    r"\bwrap (?:your |the )?(?:entire )?(?:response|answer|output|reply)"
    r" (?:with|in|inside) (?:double )?quot",
    re.IGNORECASE,
)
_POSTSCRIPT = re.compile(r"\b(?:p\.\s?s\.|postscript)", re.IGNORECASE)
_REPEAT = re.compile(
    r"\b(?:repeat|restate|copy) (?:the|this|my|your) (?:request|question|prompt|instruction)",
    re.IGNORECASE,
)
_SCRIPTS = {
    "japanese": r"[\u3040-\u30ff\u4e00-\u9fff]",
    "chinese": r"[\u4e00-\u9fff]",
    "mandarin": r"[\u4e00-\u9fff]",
    "korean": r"[\uac00-\ud7af]",
    "russian": r"[\u0400-\u04ff]",
    "ukrainian": r"[\u0400-\u04ff]",
    "bulgarian": r"[\u0400-\u04ff]",
    "greek": r"[\u0370-\u03ff]",
    "arabic": r"[\u0600-\u06ff]",
    "persian": r"[\u0600-\u06ff]",
    "farsi": r"[\u0600-\u06ff]",
    "urdu": r"[\u0600-\u06ff]",
    "hebrew": r"[\u0590-\u05ff]",
    "hindi": r"[\u0900-\u097f]",
    "marathi": r"[\u0900-\u097f]",
    "bengali": r"[\u0980-\u09ff]",
    "tamil": r"[\u0b80-\u0bff]",
    "telugu": r"[\u0c00-\u0c7f]",
    "thai": r"[\u0e00-\u0e7f]",
}
_LANGUAGE = re.compile(
    r"\b(?:in|using|only)\s+(?:the\s+)?(" + "|".join(_SCRIPTS) + r")\b", re.IGNORECASE
)
_ANY_LETTER = re.compile(r"[^\W\d_]")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])|\n+")
_PER_ITEM = re.compile(r"\b(?:each|every|per)\b[^.,;]*$")
_CONSTRAINT_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_EMOJI = re.compile("[\u2600-\u27bf\U0001f300-\U0001faff]")


def _count_of(token):
    token = token.lower().replace(",", "")
    if token.isdigit():
        return int(token)
    return _NUMBER_WORDS.get(token)


def _unit_name(text):
    for name, pattern in _UNITS:
        if re.fullmatch(pattern, text, re.IGNORECASE):
            return name
    return ""


def _measure(out, unit):
    """Return how many of a unit the output has."""
    words = _CONSTRAINT_WORDS.findall(out.lower().replace("\u2019", "'"))
    if unit == "words":
        return len(words)
    if unit == "unique_words":
        return len(set(words))
    if unit == "sentences":
        return len(re.findall(r"[^.!?\n]*[A-Za-z0-9][^.!?\n]*(?:[.!?]+|\n|$)", out))
    if unit == "paragraphs":
        return len([p for p in re.split(r"\n\s*\n|\*\*\*", out) if p.strip()])
    if unit == "bullets":
        return len(re.findall(r"(?m)^\s*(?:[-*\u2022]|\d+[.)])\s+\S", out))
    if unit == "lines":
        return len([line for line in out.splitlines() if line.strip()])
    if unit == "characters":
        return len(out)
    if unit == "sections":
        return len(re.findall(r"(?im)^\s*(?:#{1,6}\s+\S|(?:section|part|chapter)\s+\w+)", out))
    if unit == "highlights":
        return len(re.findall(r"\*[^*\n]+\*", out))
    if unit == "placeholders":
        return len(re.findall(r"\[[^\[\]\n]{1,40}\]", out))
    return len(re.findall(r"\d+(?:\.\d+)?", out))


def _limits(text):
    """Return (kind, low, high, unit, phrase) for each numeric limit the text states."""
    found = []
    taken = []
    lowered = text.lower()
    for kind, pattern in _LIMIT_RES:
        for m in pattern.finditer(lowered):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            # "each at least 5 characters long" limits every item, not the whole answer.
            if _PER_ITEM.search(lowered[max(0, m.start() - 30) : m.start()]):
                continue
            groups = m.groups()
            unit = _unit_name(groups[-1])
            numbers = [_count_of(g) for g in groups[:-1]]
            if not unit or None in numbers:
                continue
            taken.append((m.start(), m.end()))
            if kind == "between":
                low, high = min(numbers), max(numbers)
            elif kind == "max":
                strict = re.match(r"(?:fewer|less|under|shorter)", m.group(0))
                low, high = 0, numbers[0] - (1 if strict else 0)
            elif kind == "min":
                strict = re.match(r"(?:more|over|longer)", m.group(0))
                low, high = numbers[0] + (1 if strict else 0), None
            else:
                low = high = numbers[0]
            found.append((low, high, unit, m.group(0)))
    return found


def _plain(text):
    return " " + " ".join(_CONSTRAINT_WORDS.findall(text.lower().replace("\u2019", "'"))) + " "


def _instructions(in_raw):
    """Return the input's sentences that state how the answer must look.

    One pass of the cue pattern over the whole input (a long system prompt has hundreds
    of sentences), then each hit is widened to its sentence.
    """
    bounds = [0]
    bounds.extend(m.end() for m in _SENTENCE_BREAK.finditer(in_raw))
    bounds.append(len(in_raw))
    found = []
    index = 0
    for m in _INSTRUCTION.finditer(in_raw):
        while index < len(bounds) - 2 and bounds[index + 1] <= m.start():
            index += 1
        sentence = in_raw[bounds[index] : bounds[index + 1]].strip()
        if m.lastgroup == "count_cue" and not _FREQUENCY.search(sentence):
            continue
        if not found or found[-1] != sentence:
            found.append(sentence)
    return found


def _required_terms(stated):
    """Return terms the instructions ask the answer to use: keywords and quoted terms."""
    terms = []
    for sentence in stated:
        lowered = sentence.lower()
        # A phrase to end or start with is checked as such, not as a term to use.
        if _ENDS_WITH.search(sentence) or _STARTS_WITH.search(sentence):
            continue
        if re.search(r"\b(?:do not|don't|never|avoid|without)\b", lowered):
            continue
        if not re.search(r"\b(?:include|use|using|mention|contain|with|keywords?)\b", lowered):
            continue
        for m in _QUOTED.finditer(sentence):
            term = next(g for g in m.groups() if g is not None).strip()
            if term and len(term.split()) <= 6:
                terms.append(term)
        terms.extend(m.group(1) for m in _KEYWORD.finditer(sentence))
    seen = []
    for term in terms:
        if term.lower() not in (t.lower() for t in seen):
            seen.append(term)
    return seen


def _frequencies(text):
    """Return (term, low, high, phrase) for each word or letter the text says how often to use."""
    found = []
    for m in _FREQUENCY.finditer(text):
        times = _ONCE[m.group("once").lower()] if m.group("once") else _count_of(m.group("count"))
        if not times:
            continue
        term = m.group("term").lower()
        what = (m.group("what") or "").lower()
        if what.startswith("letter") and len(term) != 1:
            continue
        # "use it twice", "use commas 3 times": no word to count.
        if not what and (term in STOP_WORDS or term in _FORBIDDEN_CHARS):
            continue
        bound = (m.group("bound") or "").lower()
        negated = _NEGATED.search(text[max(0, m.start() - 30) : m.start()])
        if negated:
            if bound == "more than" or not bound:
                low, high = 0, times - (0 if bound else 1)
            elif bound in ("less than", "fewer than"):
                low, high = times, None
            else:
                continue
        elif bound in ("at most", "no more than", "not more than", "a maximum of", "up to"):
            low, high = 0, times
        elif bound in ("less than", "fewer than"):
            low, high = 0, times - 1
        elif bound == "more than":
            low, high = times + 1, None
        elif bound in ("exactly", "only"):
            low, high = times, times
        else:
            low, high = times, None
        found.append((term, low, high, m.group(0)))
    return found


def _occurrences(out, term):
    """Return how often a word (whole words, any case) or a single letter occurs."""
    if len(term) == 1:
        return out.lower().count(term)
    return len(re.findall(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])", out, re.IGNORECASE))


def _forbidden_chars(in_raw, out):
    """Return the first character class the input forbids that the output uses, else ''."""
    for m in _NO_CHAR.finditer(in_raw):
        name = m.group(1).lower()
        char = _FORBIDDEN_CHARS[name]
        if char == "whitespace":
            used = re.search(r"\s", out.strip())
        elif char == "digit":
            used = re.search(r"\d", out)
        elif char == "emoji":
            used = _EMOJI.search(out)
        else:
            used = char in out
        if used:
            return "no " + name
    return ""


def _ends(out, phrase):
    tail = _plain(out).strip()
    return tail.endswith(_plain(phrase).strip())


def _starts(out, phrase):
    return _plain(out).strip().startswith(_plain(phrase).strip())


def instruction_facts(in_raw, out_raw):
    """Return (numbers, flags) about the instructions the input states and the output.

    A flag's text says which instruction is broken ('' when none is).
    """
    out = out_raw.strip()
    stated = _instructions(in_raw)
    said = "\n".join(stated)  # every check reads the instructions, not the content
    broken = []  # (kind, text) of every checked instruction the output breaks
    kept = []
    length_broken = ""
    for low, high, unit, phrase in _limits(said):
        count = _measure(out, unit)
        if count < low or (high is not None and count > high):
            text = f"{phrase}: {count}"
            broken.append(("length", text))
            length_broken = length_broken or text
        else:
            kept.append(phrase)
    forbidden = _forbidden_chars(said, out)
    if forbidden:
        broken.append(("characters", forbidden))
    elif _NO_CHAR.search(said):
        kept.append("characters")
    if _LOWER.search(said) and _ANY_LETTER.search(out):
        (broken if out != out.lower() else kept).append(("case", "lowercase"))
    if _UPPER.search(said) and _ANY_LETTER.search(out):
        (broken if out != out.upper() else kept).append(("case", "uppercase"))
    if _TITLE_CASE.search(said):
        long_words = [w for w in re.findall(r"[A-Za-z][\w'-]*", out) if len(w) > 3]
        upper = sum(1 for w in long_words if w[0].isupper())
        titled = bool(long_words) and upper >= 0.9 * len(long_words)
        (kept if titled else broken).append(("case", "title case"))
    required = _required_terms(stated)
    plain_out = _plain(out)
    used = [t for t in required if _plain(t) in plain_out]
    missing = [t for t in required if _plain(t) not in plain_out]
    if missing:
        broken.append(("terms", "missing '" + missing[0] + "'"))
    elif required:
        kept.append("terms")
    frequencies = _frequencies(said)
    # "Do not use X more than twice" limits how often X is used; it does not forbid X.
    counted = {term for term, *_ in frequencies}
    forbidden_terms = [m.group(1).strip() for m in _FORBID_WORD.finditer(said)]
    forbidden_terms = [t for t in forbidden_terms if len(t) >= 3 and t.lower() not in counted]
    used_forbidden = [t for t in forbidden_terms if _plain(t) in plain_out]
    if used_forbidden:
        broken.append(("terms", "uses '" + used_forbidden[0] + "'"))
    elif forbidden_terms:
        kept.append("forbidden terms")
    for term, low, high, phrase in frequencies:
        count = _occurrences(out, term)
        if count < low or (high is not None and count > high):
            broken.append(("terms", f"{phrase}: {count}"))
        else:
            kept.append(phrase)
    for pattern, check, name in (
        (_ENDS_WITH, _ends, "end with"),
        (_STARTS_WITH, _starts, "start with"),
    ):
        m = pattern.search(said)
        if m:
            (kept if check(out, m.group(1)) else broken).append(
                ("phrase", f"{name} '{m.group(1)}'")
            )
    formats = []
    if _JSON.search(said):
        body = out.strip("`").strip()
        body = body[4:] if body.lower().startswith("json") else body
        try:
            json.loads(body)
            formats.append(True)
        except ValueError:
            formats.append(False)
    if re.search(r"\binstead of (?:using )?(?:bullet|markdown)", said, re.IGNORECASE):
        pass  # another list marker is asked for: not a check on bullets either way
    elif _NO_BULLETS.search(said):
        formats.append(not re.search(r"(?m)^\s*(?:[-*\u2022]|\d+[.)])\s+\S", out))
    elif _BULLETS.search(said):
        formats.append(bool(re.search(r"(?m)^\s*[-*\u2022]\s+\S", out)))
    if _NUMBERED.search(said):
        formats.append(bool(re.search(r"(?m)^\s*\d+[.)]\s+\S", out)))
    if _TITLE.search(said) or re.search(r"double angular brackets", said, re.IGNORECASE):
        formats.append(bool(_TITLE.search(out)))
    if _DOUBLE_QUOTES.search(said):
        formats.append(len(out) > 1 and out[0] in '"\u201c' and out[-1] in '"\u201d')
    if _POSTSCRIPT.search(said):
        formats.append(bool(_POSTSCRIPT.search(out)))
    if _REPEAT.search(said):
        formats.append(bool(set(_plain(in_raw).split()) >= set(_plain(out).split()[:6])))
    language = _LANGUAGE.search(said)
    if language:
        formats.append(bool(re.search(_SCRIPTS[language.group(1).lower()], out)))
    for ok in formats:
        (kept if ok else broken).append(("format", "format"))
    per_unit = _PER_UNIT.search(said)
    numbers = {
        "stated_instructions": float(len(stated)),
        "checked_instructions": float(len(broken) + len(kept)),
        "broken_instructions": float(len(broken)),
        "required_terms_used": (round(100.0 * len(used) / len(required), 1) if required else None),
    }
    flags = {
        "breaks_length_limit": length_broken[:80],
        "breaks_instruction": (broken[0][1] if broken else "")[:80],
        # Not when the input also constrains every word or sentence: no check reads that,
        # so the output cannot be said to keep the input's instructions.
        "keeps_checked_instructions": (
            f"{len(kept)} checked" if kept and not broken and not per_unit else ""
        ),
        "misses_required_term": ("missing '" + missing[0] + "'")[:80] if missing else "",
        "per_unit_instruction": per_unit.group(0)[:80] if per_unit else "",
    }
    return numbers, flags


# Function words left out when comparing what the input and the output talk about.
STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be but by can could did do does for from had has have how i if in "
        "into is it its me my no not of on or our should so than that the their them then "
        "there these they this those to was we were what when where which who why will with "
        "would you your about also just only very more most some any all been being such",
    )
)
# Scripts told apart by a character range; anything else counts as Latin.
_SCRIPT_RANGES = (
    ("Cyrillic", "\u0400", "\u04ff"),
    ("Greek", "\u0370", "\u03ff"),
    ("Arabic", "\u0600", "\u06ff"),
    ("Hebrew", "\u0590", "\u05ff"),
    ("Devanagari", "\u0900", "\u097f"),
    ("Thai", "\u0e00", "\u0e7f"),
    ("Hangul", "\uac00", "\ud7af"),
    ("Kana", "\u3040", "\u30ff"),
    ("Han", "\u4e00", "\u9fff"),
)


_SCRIPT_RES = [(name, re.compile(f"[{low}-{high}]")) for name, low, high in _SCRIPT_RANGES]
_SCRIPT_RES.append(("Latin", re.compile("[A-Za-z\u00c0-\u024f]")))
_ASCII_LETTER = re.compile("[A-Za-z]")


def _script(text):
    """Return the script most of a text's letters are written in ('' without letters)."""
    if text.isascii():
        return "Latin" if _ASCII_LETTER.search(text) else ""
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPT_RES}
    if not any(counts.values()):
        return ""
    return max(sorted(counts), key=lambda name: counts[name])


def comparison_facts(in_raw, out_raw):
    """Return (numbers, flags) comparing the output with the input it answers.

    How much of what the input talks about the output takes up (its content words), and
    whether the output is written in another script than the input.
    """
    in_terms = {
        w for w in _CONSTRAINT_WORDS.findall(in_raw.lower()) if len(w) > 3 and w not in STOP_WORDS
    }
    out_words = set(_CONSTRAINT_WORDS.findall(out_raw.lower()))
    covered = round(100.0 * len(in_terms & out_words) / len(in_terms), 1) if in_terms else None
    in_script, out_script = _script(in_raw), _script(out_raw)
    other = in_script and out_script and in_script != out_script
    numbers = {"input_terms_covered": covered}
    flags = {"other_script": f"{out_script}, not {in_script}" if other else ""}
    return numbers, flags
