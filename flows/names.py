"""Flow run names people can tell apart in the Prefect UI: a run's short id and the
attempt for its phases (a Retry shows `generate-3f2a91c4-a0` failed, then
`generate-3f2a91c4-a1` completed), and the dataset's name, not its full path.

A parent flow run started from a deployment keeps the name Prefect gave it: that name
is what `prefect deployment run` printed and what a script searches for. It is found
by its tags instead, `run:<short id>` and `dataset:<name>`, which every parent gets."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

from prefect.client.orchestration import get_client
from prefect.runtime import deployment, flow_run

from dmflow.models import TrainingRun
from dmflow.run_ids import short

logger = logging.getLogger("dmflow.names")


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
    # Asked only for a deployment's run: outside a flow run's context, each of these
    # is a read from Prefect's API.
    if deployment.id is not None and (named := flow_run.name):
        return str(named)
    return f"training-run-{dataset_name(str(_parameters()['dataset']))}"


async def label_parent_flow_run(run: TrainingRun) -> None:
    """Once a parent (training-run, recover-training-run) knows its run: the tags that
    find it, and for a training-run that Prefect did not name for a deployment, a name
    with the run's short id (`training-run-docs-3f2a91c4`)."""
    flow_run_id = flow_run.id
    if not flow_run_id:
        return
    tags = {*flow_run.tags, f"run:{short(run.id)}", f"dataset:{dataset_name(run.dataset)}"}
    name = None
    if deployment.id is None and flow_run.flow_name == "training-run":
        name = f"training-run-{dataset_name(run.dataset)}-{short(run.id)}"
    try:
        async with get_client() as client:
            await client.update_flow_run(flow_run_id, name=name, tags=sorted(tags))
    except Exception as exc:  # a label must never fail the run
        logger.warning("could not name flow run %s: %s", flow_run_id, exc)
