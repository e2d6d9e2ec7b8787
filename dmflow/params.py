"""The parameters a run is started with, stored in the run's `params` column."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field


class RunParams(BaseModel):
    """How a run generates and trains. Unknown keys (written by dmflow as it goes) are kept."""

    model_config = ConfigDict(extra="allow")

    generator: Literal["local", "openai"] = "local"
    """`local`: offline and deterministic; `openai`: any OpenAI-compatible endpoint."""
    model: str | None = None
    """The LLM for `openai` (default: DMFLOW_LLM_MODEL)."""
    questions_per_chunk: int = Field(default=4, ge=1, le=10)
    prompt: Literal["list", "one_question"] = "list"
    """How `openai` asks: `list`, a chunk's questions as a JSON array in one request;
    `one_question`, one question per request in plain words (small self-hosted models)."""
    max_pairs: int = Field(default=5000, ge=1)
    """Generation stops when the run holds this many pairs."""
    sample: Literal["spread", "in_order"] = "spread"
    """Which chunks a run the cap stops early asks: `spread`, a deterministic sample over
    the whole dataset (and its documents); `in_order`, the dataset's first rows."""
    sample_seed: int = 7
    """Picks the spread sample: the same seed, dataset and cap give the same chunks."""
    batch_size: int = Field(default=64, ge=1, le=1000)
    """Chunks per Prefect task and per database transaction."""
    train: bool = True
    """False: the run waits at `generated` for review; `dmflow recover` trains it."""
    trainer: Literal["local", "managed"] = "local"
    """`local`: an offline query adapter next to the dataset; `managed`: Activeloop."""
    embedder: str | None = None
    """How questions are embedded; it must be what made the dataset's embeddings
    (default: the name the dataset records, else hashing-512). Set on the run at start."""
    include_previous_runs: bool = False
    """Incremental retraining: also train on the pairs of the dataset's earlier completed runs."""
    poll_intervals_s: list[float] | None = None
    """Waits between job status checks, the last one repeating (default: the trainer's)."""
    training_timeout_s: float = Field(default=6 * 3600, gt=0)

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> Self:
        """The run's parameters out of a call's arguments (a flow's `locals()`): every
        field of this model, nothing else."""
        return cls.model_validate({name: arguments[name] for name in cls.model_fields})
