"""The parameters a run is started with, stored in the run's `params` column."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerationParams(BaseModel):
    """How a run generates its questions. Unknown keys (added by later phases) are kept."""

    model_config = ConfigDict(extra="allow")

    generator: Literal["local", "openai"] = "local"
    """`local`: offline and deterministic; `openai`: any OpenAI-compatible endpoint."""
    model: str | None = None
    """The LLM for `openai` (default: DMFLOW_LLM_MODEL)."""
    questions_per_chunk: int = Field(default=4, ge=1, le=10)
    max_pairs: int = Field(default=5000, ge=1)
    """Generation stops when the run holds this many pairs."""
    batch_size: int = Field(default=64, ge=1, le=1000)
    """Chunks per Prefect task and per database transaction."""
