"""`dmflow serve` in its own process and `prefect deployment run` against it, the way a
script or an operator uses them: for the served-deployment tests and docs/pictures.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def dmflow_serve(env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Every deployment served from one process, its output in `log`; stopped on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve"],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def deployment_run(
    env: Mapping[str, str], name: str, *params: str, cwd: Path, appear_within_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """`prefect deployment run NAME/NAME --param k=v --watch`, asked again while the
    served deployments are still appearing (a few seconds after `dmflow serve` starts)."""
    command = [sys.executable, "-m", "prefect", "deployment", "run", f"{name}/{name}", "--watch"]
    for param in params:
        command += ["--param", param]
    deadline = time.monotonic() + appear_within_s
    while True:
        result = subprocess.run(command, cwd=cwd, env=dict(env), capture_output=True, text=True)
        if "not found" not in (result.stdout + result.stderr).lower():
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"deployment {name} did not appear within {appear_within_s:g} s:\n"
                f"{result.stdout}{result.stderr}"
            )
        time.sleep(1)
