"""Flow run names people can tell apart in the Prefect UI: a run's short id and the
attempt for its phases (a Retry shows `generate-3f2a91c4-a0` failed, then
`generate-3f2a91c4-a1` completed), and the dataset's name, not its full path."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from prefect.runtime import flow_run

from dmflow.run_ids import short


def _parameters() -> dict[str, Any]:
    return dict(flow_run.parameters or {})


def dataset_name(dataset: str) -> str:
    """`docs` for `/data/stores/docs` and for `hub://org/docs`."""
    return PurePosixPath(dataset.rstrip("/").removeprefix("hub://")).name or dataset


def _phase(prefix: str) -> str:
    parameters = _parameters()
    name = f"{prefix}-{short(parameters['run_id'])}"
    attempt = parameters.get("attempt")
    return name if attempt is None else f"{name}-a{attempt}"


def generation_name() -> str:
    return _phase("generate")


def training_name() -> str:
    return _phase("train")


def recovery_name() -> str:
    return f"recover-{short(_parameters()['run_id'])}"


def training_run_name() -> str:
    return f"training-run-{dataset_name(str(_parameters()['dataset']))}"
