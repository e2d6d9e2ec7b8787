"""Build the trainer a run asks for."""

from __future__ import annotations

from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.training.base import DeepMemoryTrainer
from dmflow.training.local import LocalAdapterTrainer


def build_trainer(params: RunParams, settings: Settings) -> DeepMemoryTrainer:
    if params.trainer == "managed":
        from dmflow.training.managed import ManagedDeepMemoryTrainer  # its client: on demand

        return ManagedDeepMemoryTrainer(settings, embedder=params.embedder)
    jobs = settings.resolved_data_dir() / "deep-memory-jobs"
    return LocalAdapterTrainer(jobs, embedder=params.embedder, settings=settings)
