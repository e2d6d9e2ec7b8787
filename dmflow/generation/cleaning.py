"""One cleaning step for every generator's raw output."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from dmflow.models import DROPPED_PREFIX
from dmflow.redaction import storable

MIN_QUESTION_CHARS = 12
MAX_QUESTION_CHARS = 300
NEAR_DUPLICATE_JACCARD = 0.8
MIN_COPIED_WORDS = 6

_LEADER = re.compile(
    r"""^\s*(?:
        [-*\u2022>]+                       # bullets
      | \(?\d{1,2}[.)\]:]                  # 1.  1)  (1)  1:
      | (?:q(?:uestion)?\s*\d*\s*[:.)-])   # Q1:  Question 2.
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_WORD = re.compile(r"[a-z0-9_]+")
_INTERROGATIVE = re.compile(
    r"^(what|how|why|when|where|which|who|whom|whose|is|are|can|could|does|do|did|should|"
    r"would|will|may|might|must|has|have|in what|on what|for what)\b",
    re.IGNORECASE,
)


# Questions are shown in apps, where markup a model (or a poisoned document) put in one
# could run or fetch something. So a question is kept only when it is plain text: an
# allow list of characters (letters, marks, digits, spaces, punctuation, math and
# currency signs) and none of the constructs that make text markup: a tag's opening
# (`<` then a letter, `/`, `!` or `?`), an HTML entity, a markdown link or image, a
# URL, a CSS `url(`. `a < b` and `x->y` stay; `<image src=...>`, `&#x61;`,
# `![x](...)`, `https://...` and zero-width or control characters do not.
_ALLOWED_CATEGORIES = ("L", "M", "N", "P", "Zs", "Sm", "Sc", "Sk")
_MARKUP_CONSTRUCTS = re.compile(
    r"<[a-z/!?]"
    r"|&#[0-9]+;?|&#x[0-9a-f]+;?|&[a-z][a-z0-9]*;"
    r"|!\[|\]\s*\("
    r"|[a-z][a-z0-9+.-]*://|\b(?:javascript|vbscript|data|file)\s*:"
    r"|\burl\s*\(",
    re.IGNORECASE,
)

# A question about the chunk shares at least one content word with it; an assistant's
# greeting or request for a task ("I'm ready to assist. What is your request?") does
# not, and a small model that ignores the prompt writes little else.
_STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does for from had has have
    how i if in into is it its may me might must my not of on or our shall should so than
    that the their them then there these they this those to was we were what when where
    which while who whom whose why will with would you your about also any each other
    such some more most only very just like use used using text passage above below
    question questions answer answers describe described explain mean means""".split()
)
_CHATTER = re.compile(
    r"\b(?:i'?m|i am) (?:ready|happy|glad|here) to (?:help|assist)"
    r"|\bhow (?:can|may) i (?:help|assist)"
    r"|\bwhat (?:is|'s) your (?:request|task|question)"
    r"|\bwhat (?:kind|sort|type) of (?:data|help|task|information) do you need"
    r"|\b(?:as an ai|i'?m an ai|language model)\b",
    re.IGNORECASE,
)


_LETTERS = re.compile(r"[^\W\d_]+")
_ASCII_LETTERS = re.compile(r"[a-z]+")


def content_words(text: str) -> set[str]:
    """The text's content words, each cut to 5 letters: a cheap stem (`iterates` and
    `iteration` meet at `itera`; `topic0` is `topic`)."""
    # Distinct words first (in C): a chunk repeats most of its words. ASCII text takes
    # the plain pattern, twice as fast as the Unicode letter class it agrees with there.
    lowered = text.lower()
    words = set((_ASCII_LETTERS if lowered.isascii() else _LETTERS).findall(lowered)) - _STOPWORDS
    return {w[:5] for w in words if len(w) >= 3}


def carries_markup(text: str) -> bool:
    if _MARKUP_CONSTRUCTS.search(text):
        return True
    if text.isascii() and text.isprintable():
        return False  # printable ASCII is all letters, digits, space, punctuation, signs
    return any(
        not (ch in " \t\n\r" or unicodedata.category(ch).startswith(_ALLOWED_CATEGORIES))
        for ch in text
    )


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    return " ".join(_words(text))


def _strip(candidate: str) -> str:
    text = " ".join(candidate.split())
    previous = None
    while previous != text:
        previous = text
        text = _LEADER.sub("", text).strip().strip(_QUOTES).strip()
        text = text.rstrip(",;").strip()
    return text


def _as_question(text: str) -> str | None:
    if text.endswith("?"):
        return text
    if text.endswith(":"):
        return None  # a preamble ("Here are four questions:")
    if _INTERROGATIVE.match(text):
        return text.rstrip(".!") + "?"
    return None


def _copies_chunk(question: str, padded_chunk_words: str) -> bool:
    words = _words(question)
    return len(words) >= MIN_COPIED_WORDS and f" {' '.join(words)} " in padded_chunk_words


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def clean_questions(
    raw: Iterable[str], chunk_text: str, *, limit: int, dropped: Counter[str] | None = None
) -> list[str]:
    """Strip decoration, drop unusable and repeated questions, keep at most `limit`.
    `dropped` counts what was dropped by reason."""
    padded_chunk_words = f" {normalise(chunk_text)} "
    chunk_terms = content_words(chunk_text)
    kept: list[str] = []
    kept_words: list[set[str]] = []
    reasons: Counter[str] = Counter() if dropped is None else dropped
    for candidate in raw:
        if not isinstance(candidate, str):
            reasons["not text"] += 1
            continue
        # NULs and lone surrogates are dropped, not the question: the database could
        # not store them, and they come from bad bytes rather than from markup.
        candidate = storable(candidate)
        if carries_markup(candidate):
            reasons["markup"] += 1
            continue
        question = _as_question(_strip(candidate))
        if question is None or not MIN_QUESTION_CHARS <= len(question) <= MAX_QUESTION_CHARS:
            reasons["not a question" if question is None else "length"] += 1
            continue
        if _copies_chunk(question, padded_chunk_words):
            reasons["copies the chunk"] += 1
            continue
        if _CHATTER.search(question):
            reasons["assistant chatter"] += 1
            continue
        if not content_words(question) & chunk_terms:
            reasons["nothing from the chunk"] += 1
            continue
        words = set(_words(question))
        if any(_jaccard(words, other) >= NEAR_DUPLICATE_JACCARD for other in kept_words):
            reasons["near duplicate"] += 1
            continue
        kept.append(question)
        kept_words.append(words)
        if len(kept) == limit:
            break
    return kept


def dropped_usage(dropped: Counter[str]) -> dict[str, int]:
    """What the cleaning dropped, as usage counters (`questions_dropped_<reason>`; read
    back by reason as `RunUsage.dropped`)."""
    return {DROPPED_PREFIX + reason.replace(" ", "_"): n for reason, n in dropped.items()}


def parse_question_list(content: str) -> list[str] | None:
    """Questions from a model's reply: a JSON array (possibly inside prose or a code
    fence, or as {"questions": [...]}) or, failing that, question lines. None when
    nothing in the reply looks like a question."""
    start, end = content.find("["), content.rfind("]")
    if start != -1 and end > start:
        try:
            parsed = json.loads(content[start : end + 1])
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return parsed
    try:
        whole = json.loads(content)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("questions"), list):
        return [q for q in whole["questions"] if isinstance(q, str)]
    lines = [
        line
        for line in content.splitlines()
        if line.strip().endswith("?") and not line.strip().startswith(("[", "{"))
    ]
    return lines or None
