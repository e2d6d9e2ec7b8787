"""sentence-transformers from a local model directory, offline (the optional extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmflow.embedding.base import Vectors, normalised
from dmflow.errors import ConfigurationError

PREFIX = "sentence-transformers:"


class SentenceTransformerEmbedder:
    def __init__(self, model_path: str, batch_size: int = 64) -> None:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise ConfigurationError(
                f"no sentence-transformers model at {path}: the embedder loads a local model "
                "directory (offline), e.g. a copy of all-MiniLM-L6-v2"
            )
        # Never reach for the Hugging Face hub: a missing file must be an error, not a download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigurationError(
                "the sentence-transformers embedder needs the optional extra: "
                "pip install 'dmflow[sentence-transformers]'"
            ) from None
        _quiet_transformers()
        self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        # sentence-transformers 6 renamed the method; 3-5 only have the old name.
        width = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dimension = int(width())
        self.name = f"{PREFIX}{path}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(
            list(texts), batch_size=self._batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalised(vectors)


def _quiet_transformers() -> None:
    """transformers draws a progress bar on stderr for every model load: in a flow's log
    or a CLI status line that is noise, so it is switched off (its warnings stay)."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()
