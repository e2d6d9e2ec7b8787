"""The deployments `dmflow serve` serves and `deployments/prefect.yaml` declares."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.serve import SWEEP_CRON, deployments

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["training-run", "recover-training-run", "recover-failed-runs", "delete-failed-run"]


def test_served_deployments() -> None:
    served = {d.name: d for d in deployments()}
    assert list(served) == NAMES
    sweep = served["recover-failed-runs"]
    assert [s.schedule.cron for s in sweep.schedules] == [SWEEP_CRON]  # type: ignore[union-attr]
    assert sweep.concurrency_limit == 1
    assert sweep.concurrency_options is not None
    assert sweep.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert served["training-run"].concurrency_limit == 4
    assert all(d.enforce_parameter_schema for d in served.values())


def test_prefect_yaml_declares_the_same_deployments() -> None:
    declared = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    assert [d["name"] for d in declared["deployments"]] == NAMES
    for deployment in declared["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        assert f"def {function}(" in (ROOT / path).read_text()
    sweep = declared["deployments"][2]
    assert sweep["schedules"] == [{"cron": SWEEP_CRON}]
