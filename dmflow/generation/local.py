"""An offline, deterministic question generator: no model, no network.

It turns a chunk's key phrases (its most distinctive terms and term pairs) into
keyword-style questions. They are what a user might type, and they are
answerable by the chunk, which is what Deep Memory needs to learn from.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import re
import zlib
from collections import Counter
from collections.abc import Sequence

from dmflow.chunks import Chunk
from dmflow.generation.answers import Answers
from dmflow.generation.cleaning import clean_questions
from dmflow.models import ChunkResult

UNRECORDED_LIMIT_LOCAL = 1024

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?")
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    either else etc even ever every few for from further get gets given had has have having
    he her here hers him his how however i if in into is it its itself just least less like
    made make makes many may me might more most much must my neither no nor not now of off
    often on once one only or other otherwise our out over own per rather same see should
    since so some such than that the their them then there these they this those though
    through thus to too under until up upon us use used uses using very via was we were what
    when where whether which while who whom whose why will with within without would yet you
    your example examples following note new two way ways value values return returns""".split()
)
_SINGLE = (
    "What does the documentation say about {a}?",
    "How is {a} used?",
    "What is the purpose of {a}?",
    "Which rules apply to {a}?",
    "When would you use {a}?",
)
_PAIR = (
    "How does {a} relate to {b}?",
    "What is the difference between {a} and {b}?",
    "How are {a} and {b} used together?",
)


def key_phrases(text: str, limit: int) -> list[str]:
    # Counting in C (Counter over lists and zips) keeps this well under a millisecond
    # a chunk: it is the local pipeline's hot path.
    tokens = _TOKEN.findall(text.lower())
    counts = Counter(tokens)
    for token in _STOPWORDS.intersection(counts):
        del counts[token]
    for token in [token for token in counts if len(token) <= 2]:
        del counts[token]
    if not counts:
        return []
    # Each token's first index: the last write wins, and the writes go backwards.
    first_seen = dict(zip(reversed(tokens), range(len(tokens) - 1, -1, -1), strict=True))
    # Most seen first, ties in order of appearance: what `most_common()` gives, sorted
    # after the filter rather than before it.
    repeated = sorted(
        (
            (pair, seen)
            for pair, seen in Counter(itertools.pairwise(tokens)).items()
            if seen > 1 and pair[0] != pair[1] and pair[0] in counts and pair[1] in counts
        ),
        key=operator.itemgetter(1),
        reverse=True,
    )
    repeated_pairs = [f"{left} {right}" for (left, right), _ in repeated[:3]]

    # Ranked by weight (frequent, long, code-like, early terms first), then by first
    # appearance, which no two terms share. One comprehension: no call per term.
    ranked = [
        (
            -(
                seen * (1 + len(term) / 12)
                + (1.5 if ("_" in term or "." in term or "(" in term) else 0.0)
                + (1.0 if first_seen[term] < 40 else 0.0)
            ),
            first_seen[term],
            term,
        )
        for term, seen in counts.items()
    ]
    phrases = repeated_pairs
    for _, _, term in heapq.nsmallest(limit * 3, ranked):
        if len(phrases) >= limit:
            break
        if not any(term in p.split() for p in phrases):
            phrases.append(term)
    return phrases[:limit]


def questions_for(chunk: Chunk, count: int) -> list[str]:
    phrases = key_phrases(chunk.text, count + 2)
    if not phrases:
        return []
    offset = zlib.crc32(chunk.id.encode())  # deterministic variety across chunks
    raw: list[str] = []
    for index, phrase in enumerate(phrases):
        raw.append(_SINGLE[(offset + index) % len(_SINGLE)].format(a=phrase))
        if index + 1 < len(phrases) and index % 2 == 1:
            raw.append(_PAIR[(offset + index) % len(_PAIR)].format(a=phrase, b=phrases[index + 1]))
    return clean_questions(raw, chunk.text, limit=count)


class LocalQuestionGenerator:
    name = "local"

    def __init__(self, questions_per_chunk: int = 4) -> None:
        self.questions_per_chunk = questions_per_chunk

    async def generate(self, chunks: Sequence[Chunk], answers: Answers) -> None:
        # Nothing is paid here, so a looser bound than the LLM's: enough to keep the
        # recorder busy, and a database that does not answer still stops the work.
        await answers.room(UNRECORDED_LIMIT_LOCAL)
        for chunk in chunks:
            questions = questions_for(chunk, self.questions_per_chunk)
            answers.add(
                ChunkResult.done(chunk.id, questions, chunk.text)
                if questions
                else ChunkResult.skipped(chunk.id, "no usable questions: too little text")
            )
        answers.count("chunks", len(chunks))
