"""The dataset side of training: its chunk embeddings, and the embedder questions need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from dmflow.deeplake_support import load_read_only
from dmflow.embedding import Embedder, build_embedder, embedder_name_for
from dmflow.embedding.base import normalised
from dmflow.errors import ConfigurationError
from dmflow.models import TrainingPair
from dmflow.settings import Settings
from dmflow.training.base import TrainingError
from dmflow.training.evaluation import recall_at_k

Matrix = npt.NDArray[np.float32]


def open_dataset(dataset: str, token: SecretStr | None = None) -> Any:
    corpus = load_read_only(dataset, token)
    if corpus is None:
        raise TrainingError(f"no DeepLake dataset at {dataset}")
    return corpus


class QuestionEmbedder:
    """The embedder for a run's questions, refused when it cannot match a dataset's chunks.
    Built once per trainer: building one can load a model or spend a request."""

    def __init__(self, requested: str | None, settings: Settings) -> None:
        self.requested = requested
        self.settings = settings
        self._built: dict[str, Embedder] = {}

    def checked(self, corpus: Any, dataset: str) -> Embedder:
        if "embedding" not in corpus.tensors:
            raise TrainingError(f"dataset {dataset} has no `embedding` tensor to train on")
        name = embedder_name_for(dict(corpus.info), self.requested)
        embedder = self._built.get(name)
        if embedder is None:
            try:
                embedder = self._built[name] = build_embedder(name, self.settings)
            except ConfigurationError as exc:
                raise TrainingError(str(exc)) from None
        shape = corpus.embedding.shape
        dimension = int(shape[1]) if len(shape) > 1 and shape[1] is not None else None
        if dimension is not None and embedder.dimension != dimension:
            raise TrainingError(
                f"embedder {embedder.name} makes {embedder.dimension}-d vectors but the "
                f"dataset's embeddings are {dimension}-d: questions must be embedded the way "
                "the chunks were (set the run's `embedder` to the one that built the dataset)"
            )
        return embedder

    def corpus(self, corpus: Any, dataset: str) -> Corpus:
        return Corpus.load(corpus, self.checked(corpus, dataset))


@dataclass(frozen=True)
class Corpus:
    ids: list[str]
    embeddings: Matrix
    """One L2-normalised row per chunk."""
    embedder: Embedder

    @classmethod
    def load(cls, corpus: Any, embedder: Embedder) -> Corpus:
        ids = [str(v.item() if hasattr(v, "item") else v) for v in corpus.id.numpy(aslist=True)]
        return cls(ids, normalised(np.asarray(corpus.embedding.numpy())), embedder)

    def encode(self, pairs: list[TrainingPair]) -> tuple[Matrix, npt.NDArray[np.int64]]:
        """Question vectors and their chunks' rows, for pairs whose chunk is in the dataset."""
        index = {chunk_id: row for row, chunk_id in enumerate(self.ids)}
        known = [p for p in pairs if p.chunk_id in index]
        vectors = self.embedder.embed([p.question_text for p in known])
        return vectors, np.array([index[p.chunk_id] for p in known], dtype=np.int64)

    def baseline(self, held: Sequence[TrainingPair]) -> dict[str, Any]:
        """Recall of the held-out questions with the dataset's own embeddings."""
        vectors, rows = self.encode(list(held))
        return {"eval_pairs": len(rows), "before": recall_at_k(vectors, self.embeddings, rows)}
