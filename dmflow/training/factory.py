"""Build the trainer a run asks for."""

from __future__ import annotations

from dmflow.params import RunParams
from dmflow.settings import Settings
from dmflow.training.base import DeepMemoryTrainer, TrainingError
from dmflow.training.local import LocalAdapterTrainer


def build_trainer(params: RunParams, settings: Settings) -> DeepMemoryTrainer:
    if params.trainer == "local":
        return LocalAdapterTrainer(settings.resolved_data_dir() / "deep-memory-jobs")
    raise TrainingError(
        "the managed (Activeloop) Deep Memory trainer is not available in this version of "
        "dmflow: start the run with trainer=local"
    )
