"""`Embedder`: text to vectors, the same way for questions as for the dataset's chunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    name: str
    """Recorded in the run and in the dataset's info: `hashing-512`,
    `sentence-transformers:/models/all-MiniLM-L6-v2`, `openai:text-embedding-3-small`."""
    dimension: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Float32 vectors, one row per text, L2-normalised."""
        ...


def normalised(vectors: Vectors) -> Vectors:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: Vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return result
