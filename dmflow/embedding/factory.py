"""Build an embedder from its recorded name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dmflow.embedding.base import Embedder
from dmflow.embedding.hashing import HashingEmbedder
from dmflow.errors import ConfigurationError
from dmflow.settings import Settings

DEFAULT_EMBEDDER = "hashing-512"


def embedder_name_for(dataset_info: Mapping[str, Any], requested: str | None = None) -> str:
    """The run's choice, else what the dataset says made its embeddings, else the default."""
    return requested or str(dataset_info.get("embedder") or DEFAULT_EMBEDDER)


def build_embedder(name: str, settings: Settings) -> Embedder:
    if name.startswith("hashing-") and name.removeprefix("hashing-").isdigit():
        return HashingEmbedder(int(name.removeprefix("hashing-")))
    if name.startswith("sentence-transformers:"):
        from dmflow.embedding.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(name.removeprefix("sentence-transformers:"))
    if name.startswith("openai:"):
        from dmflow.embedding.openai_embeddings import OpenAIEmbedder

        return OpenAIEmbedder(
            name.removeprefix("openai:"),
            api_key=settings.embedding_api_key or settings.llm_api_key,
            base_url=settings.embedding_base_url or settings.llm_base_url,
            timeout_s=settings.llm_timeout_s,
        )
    raise ConfigurationError(
        f"unknown embedder {name!r}: use hashing-<dimension>, "
        "sentence-transformers:<local model directory> or openai:<model>"
    )
