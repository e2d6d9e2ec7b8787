"""The default embedder: no model download, no heavy dependency, deterministic."""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from dmflow.embedding.base import Vectors

_WORD = re.compile(r"[a-z0-9_]+")


class HashingEmbedder:
    """Feature hashing of words and word pairs, sublinear term frequency, L2-normalised.

    Deterministic and instant; good enough to make retrieval on the sample corpus
    meaningful and for Deep Memory's query adapter to have something to improve.
    """

    def __init__(self, dimension: int = 512) -> None:
        self.dimension = dimension
        self.name = f"hashing-{dimension}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = Counter(words)
            features.update(f"{a} {b}" for a, b in itertools.pairwise(words))
            for feature, count in features.items():
                digest = zlib.crc32(feature.encode())
                sign = 1.0 if digest & 0x80000000 else -1.0
                vectors[row, digest % self.dimension] += sign * (1.0 + math.log(count))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors
