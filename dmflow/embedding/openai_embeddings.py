"""Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openai
from pydantic import SecretStr

from dmflow.embedding.base import Vectors, normalised
from dmflow.errors import ConfigurationError

PREFIX = "openai:"

# Known models' widths, so preflight can check a dataset without spending a request.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    def __init__(
        self,
        model: str,
        *,
        api_key: SecretStr | None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        batch_size: int = 256,
    ) -> None:
        if api_key is None:
            raise ConfigurationError(
                "the openai embedder needs an API key: set DMFLOW_EMBEDDING_API_KEY "
                "(or DMFLOW_LLM_API_KEY)"
            )
        self._model = model
        self._batch_size = batch_size
        self._client = openai.OpenAI(
            api_key=api_key.get_secret_value(),
            base_url=base_url,
            timeout=timeout_s,
            max_retries=3,
        )
        self.name = f"{PREFIX}{model}"
        known = KNOWN_DIMENSIONS.get(model)
        self.dimension = known or int(self.embed(["dimension probe"]).shape[1])

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                response = self._client.embeddings.create(model=self._model, input=batch)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise ConfigurationError(
                    f"the embeddings endpoint refused the API key ({exc.status_code}): "
                    "check DMFLOW_EMBEDDING_API_KEY"
                ) from None
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        return normalised(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))
