"""The dataset side of training: its chunk embeddings, and the embedder questions need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from dmflow.deeplake_support import import_deeplake
from dmflow.embedding import Embedder, build_embedder, embedder_name_for
from dmflow.embedding.base import normalised
from dmflow.errors import ConfigurationError
from dmflow.models import TrainingPair
from dmflow.settings import Settings
from dmflow.training.base import TrainingError
from dmflow.training.evaluation import recall_at_k

Matrix = npt.NDArray[np.float32]


def open_dataset(dataset: str, token: SecretStr | None = None) -> Any:
    deeplake = import_deeplake()
    from deeplake.util.exceptions import DatasetHandlerError

    try:
        return deeplake.load(
            dataset,
            read_only=True,
            verbose=False,
            token=token.get_secret_value() if token is not None else None,
        )
    except DatasetHandlerError:
        raise TrainingError(f"no DeepLake dataset at {dataset}") from None


def checked_embedder(
    corpus: Any, dataset: str, requested: str | None, settings: Settings
) -> Embedder:
    """The embedder for the run's questions, refused when it cannot match the chunks."""
    if "embedding" not in corpus.tensors:
        raise TrainingError(f"dataset {dataset} has no `embedding` tensor to train on")
    name = embedder_name_for(dict(corpus.info), requested)
    try:
        embedder = build_embedder(name, settings)
    except ConfigurationError as exc:
        raise TrainingError(str(exc)) from None
    shape = corpus.embedding.shape
    dimension = int(shape[1]) if len(shape) > 1 and shape[1] is not None else None
    if dimension is not None and embedder.dimension != dimension:
        raise TrainingError(
            f"embedder {embedder.name} makes {embedder.dimension}-d vectors but the dataset's "
            f"embeddings are {dimension}-d: questions must be embedded the way the chunks were "
            "(set the run's `embedder` to the one that built the dataset)"
        )
    return embedder


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

    def recall(self, held: list[TrainingPair]) -> tuple[int, dict[str, float]]:
        vectors, rows = self.encode(held)
        return len(rows), recall_at_k(vectors, self.embeddings, rows)
