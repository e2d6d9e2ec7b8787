"""The `dmflow` command's entry point: finds the Prefect layer, then hands over to it.

An installed wheel keeps the Prefect layer (the repository's `flows/` and `tasks/`) in
`dmflow/_prefect/`, not at the top of site-packages: a Prefect user's own project very
often has a package named `flows`, and `import flows` would then mean one or the other
depending on `sys.path`. Only dmflow's own processes put that folder on their path (and
on `PYTHONPATH`, for the flow-run processes `dmflow serve` starts). In a checkout the
folders are where they are, at the repository's top.

The core names the layer here only as a string: it never imports Prefect itself.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

PREFECT_LAYER = Path(__file__).resolve().parent / "_prefect"


def put_the_prefect_layer_on_the_path() -> None:
    if not PREFECT_LAYER.is_dir():
        return  # a checkout: `flows` and `tasks` are the repository's own folders
    layer = str(PREFECT_LAYER)
    if layer not in sys.path:
        sys.path.insert(0, layer)
    inherited = os.environ.get("PYTHONPATH", "")
    if layer not in inherited.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (layer, inherited) if p)


def main() -> None:
    put_the_prefect_layer_on_the_path()
    importlib.import_module("flows.cli").main()
