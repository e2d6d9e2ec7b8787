"""The offline sample corpus: Python's own documentation as a DeepLake vector store.

`pydoc_data.topics` (about 65,000 words of the language reference) ships with
every Python; `large` adds the standard library's docstrings, read with `ast`
so no module is imported.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmflow.deeplake_support import import_deeplake
from dmflow.embedding import Embedder, HashingEmbedder
from dmflow.errors import DmflowError

MIN_WORDS, TARGET_WORDS, MAX_WORDS = 100, 180, 300
_WRITE_BATCH = 512
# Packages that are tests, tools or vendored code, not library documentation.
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "turtledemo",
    "ensurepip",
    "__pycache__",
    "pydoc_data",
    "tkinter",
}


@dataclass(frozen=True)
class SampleChunk:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def split_words(text: str) -> Iterator[str]:
    """Pieces of about TARGET_WORDS (between MIN and MAX) words, cut at paragraphs."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    pieces: list[list[str]] = []
    current: list[str] = []
    for paragraph in paragraphs:
        words = paragraph.split()
        while len(words) > MAX_WORDS:  # a giant paragraph: cut it
            head, words = words[:TARGET_WORDS], words[TARGET_WORDS:]
            if current:
                pieces.append(current)
                current = []
            pieces.append(head)
        if current and len(current) + len(words) > MAX_WORDS:
            pieces.append(current)
            current = []
        current = current + words
        if len(current) >= TARGET_WORDS:
            pieces.append(current)
            current = []
    if current:
        if pieces and len(current) < MIN_WORDS and len(pieces[-1]) + len(current) <= MAX_WORDS:
            pieces[-1] = pieces[-1] + current
        else:
            pieces.append(current)
    for piece in pieces:
        yield " ".join(piece)


def _topic_chunks() -> Iterator[SampleChunk]:
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        for index, text in enumerate(split_words(topics[topic])):
            if len(text.split()) < MIN_WORDS // 2:
                continue  # a one-line topic ("BASICMETHODS" and the like) answers nothing
            yield SampleChunk(
                f"topic-{topic}-{index}",
                text,
                {"source": "pydoc_data.topics", "topic": topic, "doc_id": f"topic-{topic}"},
            )


def _docstring_chunks() -> Iterator[SampleChunk]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if _SKIP_DIRS.intersection(relative.parts[:-1]) or relative.name.startswith("test"):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        docs: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 20:
                    name = getattr(node, "name", module)
                    docs.append(f"{module}.{name}: {doc}" if name != module else doc)
        for index, text in enumerate(split_words("\n\n".join(docs))):
            if len(text.split()) >= MIN_WORDS // 2:
                yield SampleChunk(
                    f"doc-{module}-{index}",
                    text,
                    {"source": "stdlib docstrings", "module": module, "doc_id": module},
                )


def sample_chunks(*, large: bool = False) -> Iterator[SampleChunk]:
    # Several topics repeat the same section; a retrieval corpus with identical
    # chunks under two ids has no single right answer, so keep the first.
    seen: set[str] = set()
    sources = [_topic_chunks(), _docstring_chunks()] if large else [_topic_chunks()]
    for source in sources:
        for chunk in source:
            if chunk.text not in seen:
                seen.add(chunk.text)
                yield chunk


def build_sample_dataset(
    path: Path, *, large: bool = False, overwrite: bool = False, embedder: Embedder | None = None
) -> int:
    """Write the sample corpus as a local DeepLake dataset in the VectorStore layout."""
    embedder = embedder or HashingEmbedder()
    deeplake = import_deeplake()
    from deeplake.constants import DEFAULT_VECTORSTORE_TENSORS

    path = path.expanduser().resolve()
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise DmflowError(
            f"{path} already exists and is not empty: pass --overwrite or pick another path"
        )
    dataset = deeplake.empty(str(path), overwrite=True, verbose=False)
    written = 0
    with dataset:
        for spec in DEFAULT_VECTORSTORE_TENSORS:
            dataset.create_tensor(**dict(spec))
        dataset.info.update(embedder=embedder.name, source="dmflow sample")
        batch: list[SampleChunk] = []

        def flush() -> None:
            nonlocal written
            dataset.extend(
                {
                    "id": [c.id for c in batch],
                    "text": [c.text for c in batch],
                    "metadata": [c.metadata for c in batch],
                    "embedding": np.asarray(embedder.embed([c.text for c in batch]), np.float32),
                }
            )
            written += len(batch)
            batch.clear()

        for chunk in sample_chunks(large=large):
            batch.append(chunk)
            if len(batch) == _WRITE_BATCH:
                flush()
        if batch:
            flush()
    return written
