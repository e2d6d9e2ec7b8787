"""Embedders: the default hashing one, sentence-transformers (optional extra), OpenAI."""

from dmflow.embedding.base import Embedder, Vectors
from dmflow.embedding.factory import DEFAULT_EMBEDDER, build_embedder, embedder_name_for
from dmflow.embedding.hashing import HashingEmbedder

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "HashingEmbedder",
    "Vectors",
    "build_embedder",
    "embedder_name_for",
]
