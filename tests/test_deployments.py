"""One deployment table: `dmflow serve` builds from it and `deployments/prefect.yaml`
declares the same deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dmflow.params import RunParams
from flows.deployment_table import DEPLOYMENTS, TAGS, Deployment
from flows.serve import deployments, flow_of

ROOT = Path(__file__).resolve().parent.parent
DECLARED: list[dict[str, Any]] = yaml.safe_load(
    (ROOT / "deployments" / "prefect.yaml").read_text()
)["deployments"]


def test_the_table_lists_the_four_deployments() -> None:
    assert [d.name for d in DEPLOYMENTS] == [
        "training-run",
        "recover-training-run",
        "recover-failed-runs",
        "delete-failed-run",
    ]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_entrypoints_name_the_flows(deployment: Deployment) -> None:
    assert flow_of(deployment).name == deployment.flow_name


def test_served_deployments_follow_the_table() -> None:
    served = deployments()
    assert [d.name for d in served] == [d.name for d in DEPLOYMENTS]
    for runner, row in zip(served, DEPLOYMENTS, strict=True):
        assert runner.description == row.description
        assert runner.tags == list(TAGS)
        crons = [s.schedule.cron for s in runner.schedules]  # type: ignore[union-attr]
        assert crons == ([row.cron] if row.cron else [])
        assert runner.concurrency_limit == row.concurrency_limit
        strategy = runner.concurrency_options and runner.concurrency_options.collision_strategy
        assert (strategy.value if strategy else None) == row.collision_strategy
        assert runner.enforce_parameter_schema


def test_prefect_yaml_follows_the_table() -> None:
    assert [d["name"] for d in DECLARED] == [d.name for d in DEPLOYMENTS]
    for declared, row in zip(DECLARED, DEPLOYMENTS, strict=True):
        assert declared["entrypoint"] == row.entrypoint
        assert declared["description"] == row.description
        assert declared["tags"] == list(TAGS)
        assert declared.get("schedules", []) == ([{"cron": row.cron}] if row.cron else [])
        limit = declared.get("concurrency_limit") or {}
        assert limit.get("limit") == row.concurrency_limit
        assert limit.get("collision_strategy") == row.collision_strategy


def test_prefect_yaml_parameters_are_run_params_defaults() -> None:
    [training] = [d for d in DECLARED if d["name"] == "training-run"]
    defaults = RunParams()
    for name, value in training.get("parameters", {}).items():
        assert name in RunParams.model_fields, f"prefect.yaml sets unknown parameter {name}"
        assert getattr(defaults, name) == value, name
