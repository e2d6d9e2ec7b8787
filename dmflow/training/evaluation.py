"""Held-out split by chunk and recall@k."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from dmflow.models import TrainingPair

RECALL_AT = (1, 3, 5, 10, 50, 100)
HOLDOUT_FRACTION = 0.10


def is_held_out(chunk_id: str, fraction: float = HOLDOUT_FRACTION) -> bool:
    """Deterministic: the same chunk is always on the same side, across runs and resumes."""
    return zlib.crc32(chunk_id.encode()) % 10_000 < fraction * 10_000


def split_by_chunk(
    pairs: Sequence[TrainingPair], fraction: float = HOLDOUT_FRACTION
) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(train, held out): all questions of a chunk land on the same side, each side in a
    stable order. Pairs are stored under random ids, so the order they are read in
    differs between runs; training on them in that order gave a different adapter (and
    recall) each time from the same pairs."""
    ordered = sorted(pairs, key=lambda p: (p.chunk_id, p.question_text))
    train = [p for p in ordered if not is_held_out(p.chunk_id, fraction)]
    held = [p for p in ordered if is_held_out(p.chunk_id, fraction)]
    return train, held


def recall_at_k(
    queries: npt.NDArray[np.float32],
    corpus: npt.NDArray[np.float32],
    relevant: npt.NDArray[np.int64],
    ks: Sequence[int] = RECALL_AT,
) -> dict[str, float]:
    """Share of queries whose relevant corpus row ranks within the top k, for each k."""
    if len(queries) == 0:
        return {f"recall@{k}": 0.0 for k in ks}
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ corpus.T
        target = scores[np.arange(len(scores)), relevant[start : start + 1024]]
        ranks[start : start + 1024] = (scores > target[:, None]).sum(axis=1)
    return {f"recall@{k}": float(np.mean(ranks < k)) for k in ks}
