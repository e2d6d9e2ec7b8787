"""Which chunks a capped run asks: a deterministic sample spread over the whole dataset.

Walking the dataset in its stored order until `max_pairs` trains Deep Memory on the
first documents ingested, and measures recall there only. Instead each chunk gets a
key from a hash of (seed, chunk id); where the metadata names a source document, the
key ranks first by the chunk's place among its document's chunks (every document's
first pick comes before any document's second), then by the hash. Generation asks the
chunks with the lowest keys, in passes: the first pass is sized to meet the cap at
`questions_per_chunk` questions a chunk, each further pass (when cleaning and skips
left the cap unmet) asks the next slice of keys. Every pass still reads the dataset
in its stored order, a window at a time.

The same dataset, seed and parameters give the same sample, so a resumed run asks
exactly what its first attempt would have asked.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DOCUMENT_KEYS = (
    "doc_id",
    "ref_doc_id",
    "document_id",
    "source",
    "file_path",
    "file_name",
    "file",
    "url",
)
"""Metadata keys that name a chunk's source document, first found wins: LlamaIndex's
DeepLake writer stores `doc_id`/`ref_doc_id`/`document_id` and `file_path`/`file_name`,
LangChain's document loaders `source`."""

PASS_SIZES = (1.0, 1.25, 1.6, 2.0)
"""Each pass's cumulative share of the chunks the cap needs; past these, doubling."""

MIN_DOCUMENTED_SHARE = 0.5
"""Below this share of chunks naming a document, the documents are not used to spread."""


def chunk_key(seed: int, chunk_id: str) -> float:
    """A uniform number in [0, 1) from (seed, chunk id): the same on every machine."""
    digest = hashlib.blake2b(f"{seed}\x00{chunk_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def document_of(metadata: Any) -> str | None:
    """The source document a chunk's metadata names, if any."""
    if not isinstance(metadata, Mapping):
        return None
    for key in DOCUMENT_KEYS:
        value = metadata.get(key)
        if isinstance(value, str | int) and str(value).strip():
            return str(value)
    return None


@dataclass(frozen=True)
class SamplePlan:
    """The passes of a spread sample over a dataset's rows."""

    keys: npt.NDArray[np.float64]
    """One key per row; `inf` for a row that is not a candidate (answered earlier)."""
    bounds: tuple[float, ...]
    """Pass n asks the rows with bounds[n-1] < key <= bounds[n] (bounds[-1] is -inf)."""
    candidates: int
    documents: npt.NDArray[np.int64] | None
    """A document number per row where the metadata names documents, else None."""

    @property
    def passes(self) -> int:
        return len(self.bounds)

    def rows(self, pass_index: int) -> npt.NDArray[np.bool_]:
        """Which rows the pass asks (0-based pass index)."""
        low = self.bounds[pass_index - 1] if pass_index else -math.inf
        return (self.keys > low) & (self.keys <= self.bounds[pass_index])

    @property
    def document_count(self) -> int | None:
        """Documents the dataset's metadata names."""
        return self.documents_covered(np.ones(len(self.keys), dtype=bool))

    def documents_covered(self, asked: npt.NDArray[np.bool_]) -> int | None:
        """Documents with at least one row in `asked`."""
        if self.documents is None:
            return None
        return len(np.unique(self.documents[asked & (self.documents >= 0)]))


def plan_sample(
    rows: Iterable[tuple[str, str | None]],
    total: int,
    *,
    seed: int,
    target_chunks: int,
    exclude: Container[str] = (),
) -> SamplePlan | None:
    """The spread sample of `rows` ((chunk id, document or None), in dataset order), or
    None when the cap would not stop generation before the candidates run out (every
    candidate is asked, in dataset order). `exclude`: chunks that are not candidates."""
    keys = np.full(total, math.inf)
    document_names: dict[str, int] = {}
    documents = np.full(total, -1, dtype=np.int64)
    for row, (chunk_id, document) in enumerate(_counted(rows, total)):
        if document is not None:
            documents[row] = document_names.setdefault(document, len(document_names))
        if chunk_id not in exclude:
            keys[row] = chunk_key(seed, chunk_id)
    candidate = np.isfinite(keys)
    candidates = int(candidate.sum())
    if target_chunks >= candidates:
        return None
    named = documents[candidate] >= 0
    by_document: npt.NDArray[np.int64] | None = None
    if candidates and named.mean() >= MIN_DOCUMENTED_SHARE and len(document_names) > 1:
        by_document = documents
        keys = _ranked_within_documents(keys, documents)
    ordered = np.sort(keys[candidate])
    bounds: list[float] = []
    for size in _pass_sizes(target_chunks, candidates):
        bounds.append(float(ordered[size - 1]))
    return SamplePlan(keys=keys, bounds=tuple(bounds), candidates=candidates, documents=by_document)


def _counted(
    rows: Iterable[tuple[str, str | None]], total: int
) -> Iterator[tuple[str, str | None]]:
    for row, item in enumerate(rows):
        if row >= total:
            raise ValueError(f"the dataset has more than the {total} rows it reported")
        yield item


def _ranked_within_documents(
    keys: npt.NDArray[np.float64], documents: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """rank among its document's candidates + the hash: a document's first pick (rank 0)
    comes before every document's second. Rows naming no document share one group."""
    ranked = keys.copy()
    order = np.lexsort((keys, documents))
    sorted_documents = documents[order]
    starts = np.flatnonzero(np.r_[True, sorted_documents[1:] != sorted_documents[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.arange(len(order)) - group_start
    finite = np.isfinite(keys[order])
    ranked[order[finite]] = rank[finite] + keys[order[finite]]
    return ranked


def _pass_sizes(target: int, candidates: int) -> Iterator[int]:
    """Cumulative chunks asked after each pass, the last one every candidate."""
    share = iter(PASS_SIZES)
    factor = next(share)
    while True:
        size = min(candidates, max(1, math.ceil(target * factor)))
        yield size
        if size >= candidates:
            return
        factor = next(share, factor * 2)


def target_chunks(max_pairs: int, questions_per_chunk: int) -> int:
    """Chunks that meet the cap when every chunk gives its questions."""
    return math.ceil(max_pairs / questions_per_chunk)
