"""Regenerate the README's pictures from a real run (nothing is drawn by hand).

1. `docs/img/retry-graph.png`: the Prefect UI of a training run whose generation
   failed part-way (the LLM endpoint started refusing its key) and that someone
   then retried with the UI's Retry button: the parent flow run's graph with both
   generation attempts and the training phase.
2. `docs/img/summary-artifact.png`: that flow run's summary artifact.
3. `docs/img/recall.svg`: recall@k before and after training, from the run's
   stored metrics.

It runs offline in a throwaway data directory: the embedded PostgreSQL and Prefect
server, `dmflow serve`, `prefect deployment run`, the local OpenAI-compatible test
server as the LLM, and Debian's Chromium driven by Playwright (a real click on
Retry). Needs `apt install chromium` and `uv sync --group pictures`, then:

    uv run python docs/pictures.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
FAIL_AFTER_CHUNKS = 120


def dmflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"dmflow {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def refusing_after(chunks: int) -> Any:
    """An LLM that answers the first `chunks` chunks, then refuses its key."""
    from dmflow.testing.llm_server import unauthorized, valid_json

    answered: set[str] = set()

    def script(text: str, attempt: int) -> Any:
        if text in answered or len(answered) < chunks:
            answered.add(text)
            return valid_json(text, attempt)
        return unauthorized(text, attempt)

    return script


def pause_sweep(env: dict[str, str]) -> None:
    """The sweep's schedule could recover the failed run before the Retry click."""
    code = (
        "import asyncio\n"
        "from prefect.client.orchestration import get_client\n"
        "async def main():\n"
        "    async with get_client() as client:\n"
        "        d = await client.read_deployment_by_name("
        "'recover-failed-runs/recover-failed-runs')\n"
        "        await client.pause_deployment(d.id)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


def the_run(env: dict[str, str]) -> dict[str, Any]:
    """The newest run (`dmflow runs` lists the newest first)."""
    return dict(json.loads(dmflow(env, "runs", "--json"))[0])


def wait_for(env: dict[str, str], status: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (run := the_run(env))["status"] != status:
        if time.monotonic() > deadline:
            raise SystemExit(f"the run is {run['status']}, not {status}, after {timeout_s} s")
        time.sleep(1)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="Leave the data directory.")
    args = parser.parse_args()
    from docs.browser import CHROMIUM, Browser

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no {CHROMIUM}: apt install chromium")
    from dmflow.prefect_ui import prefect_ui
    from dmflow.testing.llm_server import start_llm_server, valid_json
    from dmflow.testing.served import deployment_run, dmflow_serve

    data = Path(tempfile.mkdtemp(prefix="dmflow-pictures-"))
    llm, httpd = start_llm_server()
    llm.script = refusing_after(FAIL_AFTER_CHUNKS)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DMFLOW_"))},
        "DMFLOW_DATA_DIR": str(data),
        "DMFLOW_LLM_BASE_URL": llm.url,
        "DMFLOW_LLM_API_KEY": "sk-pictures",
        "DMFLOW_LLM_MAX_ATTEMPTS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    try:
        dataset = data / "python-docs"
        dmflow(env, "sample", str(dataset))
        ui = prefect_ui(start_prefect(env))
        with dmflow_serve(env, data / "serve.log", ROOT):
            params = (f"dataset={dataset}", "generator=openai", "questions_per_chunk=4")
            deployment_run(env, "training-run", *params, cwd=ROOT, appear_within_s=90)
            failed = wait_for(env, "generating_failed")
            pause_sweep(env)
            print(f"generation failed at {failed['processed_chunks']} chunks: retrying in the UI")
            llm.script = valid_json  # the key works again
            with Browser(ui.pages, env["PREFECT_API_AUTH_STRING"]) as browser:
                flow_run = ui.flow_run(failed["flow_run_id"])
                browser.retry(flow_run)
                run = wait_for(env, "completed")
                browser.graph(flow_run, IMAGES / "retry-graph.png")
                browser.artifact(f"training-run-{run['id']}", IMAGES / "summary-artifact.png")
        # The plot shows what the demo prints: the local generator on the sample corpus
        # (the test LLM's template questions above make a different, lower curve).
        dmflow(env, "run", str(dataset))  # returns once the run completed, else exits
        write_recall_plot(the_run(env)["metrics"], IMAGES / "recall.svg")
        print(f"wrote {', '.join(p.name for p in sorted(IMAGES.iterdir()))} to {IMAGES}")
    finally:
        httpd.shutdown()
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "server", "stop"], cwd=ROOT, env=env, check=False
        )
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)


def start_prefect(env: dict[str, str]) -> str:
    """The data directory's embedded Prefect server; its address and login go into `env`
    for `prefect deployment run`."""
    code = (
        "import json\n"
        "from dmflow import resources\n"
        "from dmflow.database import embedded_prefect_server\n"
        "server = embedded_prefect_server(resources.settings())\n"
        "state = server.ensure_running()\n"
        "print(json.dumps([state.api_url, state.ui_url, server.auth_string()]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    api, ui, auth = json.loads(done.stdout.strip().splitlines()[-1])
    env["PREFECT_API_URL"] = api
    env["PREFECT_API_AUTH_STRING"] = auth
    return str(ui).rstrip("/")


def write_recall_plot(metrics: dict[str, Any], path: Path) -> None:
    from docs.recall_plot import recall_svg

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(recall_svg(metrics))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
