"""Every dmflow deployment, served from one process (`dmflow serve`)."""

from __future__ import annotations

import importlib
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.types.entrypoint import EntrypointType

from flows.deployment_table import DEPLOYMENTS, TAGS, Deployment


def flow_of(deployment: Deployment) -> Flow[..., Any]:
    path, _, function = deployment.entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    found = getattr(module, function)
    assert isinstance(found, Flow), deployment.entrypoint
    return found


def runner_deployment(deployment: Deployment) -> RunnerDeployment:
    limit: ConcurrencyLimitConfig | None = None
    if deployment.concurrency_limit is not None:
        limit = ConcurrencyLimitConfig(
            limit=deployment.concurrency_limit,
            collision_strategy=ConcurrencyLimitStrategy(deployment.collision_strategy),
        )
    built = flow_of(deployment).to_deployment(
        name=deployment.name,
        description=deployment.description,
        cron=deployment.cron,
        concurrency_limit=limit,
        tags=list(TAGS),
        # `flows.training_run.training_run`, wherever `dmflow serve` was started: a file
        # path would be relative to that directory (`../../srv/dmflow/flows/...`).
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    # to_deployment() hands back a coroutine only inside an event loop; this is sync.
    assert isinstance(built, RunnerDeployment)
    return built


def deployments() -> list[RunnerDeployment]:
    return [runner_deployment(d) for d in DEPLOYMENTS]


def serve_all() -> None:
    # dmflow's CLI says what is served and how to reach it (Prefect's own message links
    # the old UI and a `prefect` CLI that is not pointed at this server).
    serve(*deployments(), print_starting_message=False)
