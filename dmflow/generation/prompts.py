"""How dmflow asks an OpenAI-compatible model for a chunk's questions."""

from __future__ import annotations

from typing import Literal

SYSTEM_PROMPT = (
    "You write search questions for a retrieval system. Given a passage, write {n} distinct "
    "questions that the passage answers. Each question must be specific, self-contained and "
    "answerable from the passage alone; do not copy sentences from it. Reply with a JSON array "
    "of strings and nothing else."
)
ONE_QUESTION_PROMPT = "{passage}\n\nWrite one question that the text above answers."
"""For small models, which paraphrase the passage when asked for a JSON array but write
a question when asked for one in plain words (SmolLM2-135M does)."""

PromptStyle = Literal["list", "one_question"]


def messages_for(style: PromptStyle, passage: str, n: int) -> list[dict[str, str]]:
    if style == "one_question":
        return [{"role": "user", "content": ONE_QUESTION_PROMPT.format(passage=passage)}]
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(n=n)},
        {"role": "user", "content": passage},
    ]
