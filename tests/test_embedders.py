"""Embedders: the default, OpenAI-compatible embeddings over HTTP, the optional extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from dmflow.embedding import build_embedder, embedder_name_for
from dmflow.errors import ConfigurationError
from dmflow.settings import Settings
from dmflow.training.base import TrainingError
from dmflow.training.local import LocalAdapterTrainer
from tests.fixtures.datasets import MakeDataset
from tests.fixtures.llm_server import LLMServer


def test_the_dataset_names_its_embedder_and_the_run_may_override_it() -> None:
    assert embedder_name_for({"embedder": "openai:text-embedding-3-small"}) == (
        "openai:text-embedding-3-small"
    )
    assert embedder_name_for({}) == "hashing-512"
    assert embedder_name_for({"embedder": "hashing-512"}, "hashing-64") == "hashing-64"


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = build_embedder("hashing-128", Settings())
    first, second = (
        embedder.embed(["how do decorators work"]),
        embedder.embed(["how do decorators work"]),
    )
    assert first.shape == (1, 128) and first.dtype == np.float32
    assert np.array_equal(first, second)
    assert np.linalg.norm(first[0]) == pytest.approx(1.0, abs=1e-5)


def test_openai_embeddings_over_http(llm_server: LLMServer) -> None:
    settings = Settings(embedding_base_url=llm_server.url, embedding_api_key=SecretStr("k"))
    embedder = build_embedder("openai:local-embedder", settings)
    assert (embedder.name, embedder.dimension) == ("openai:local-embedder", 48)
    vectors = embedder.embed([f"question {n}" for n in range(300)])
    assert vectors.shape == (300, 48)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert llm_server.embedded_texts == 1 + 300  # the dimension probe, then two batches


def test_openai_embeddings_refuse_a_rejected_key(llm_server: LLMServer) -> None:
    settings = Settings(
        embedding_base_url=llm_server.url, embedding_api_key=SecretStr("rejected-key")
    )
    with pytest.raises(ConfigurationError, match="refused the API key"):
        build_embedder("openai:local-embedder", settings)
    with pytest.raises(ConfigurationError, match="needs an API key"):
        build_embedder("openai:text-embedding-3-small", Settings(llm_api_key=None))


def test_unknown_embedders_and_missing_models_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown embedder 'word2vec'"):
        build_embedder("word2vec", Settings())
    with pytest.raises(ConfigurationError, match="no sentence-transformers model at"):
        build_embedder(f"sentence-transformers:{tmp_path / 'absent'}", Settings())


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="the optional extra is installed",
)
def test_sentence_transformers_without_the_extra_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"pip install 'dmflow\[sentence-transformers\]'"):
        build_embedder(f"sentence-transformers:{tmp_path}", Settings())


def test_training_refuses_an_embedder_of_another_dimension(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    dataset = make_dataset([("a", "alpha"), ("b", "beta")])  # 8-d embeddings
    trainer = LocalAdapterTrainer(tmp_path, embedder="hashing-16")
    with pytest.raises(TrainingError, match="hashing-16 makes 16-d vectors but the dataset's"):
        trainer.preflight(dataset)
    assert LocalAdapterTrainer(tmp_path, embedder="hashing-8").preflight(dataset) == "hashing-8"
