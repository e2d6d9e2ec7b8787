"""Importing deeplake 3.9 without it phoning home.

`import deeplake` asks PyPI for a newer version (a 2 s timeout offline) and
turns telemetry on unless told otherwise; its telemetry would also carry our
training queries. Import it only through `import_deeplake()`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import ModuleType

_PINNED = "3.9.52"


def _seed_version_check_cache() -> None:
    # deeplake skips the PyPI request while this cache is less than a day old.
    cache = Path("~/.activeloop/pypi_version.json").expanduser()
    try:
        if cache.is_file() and time.time() - json.loads(cache.read_text())[1] < 12 * 3600:
            return
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([_PINNED, time.time()]))
    except (OSError, ValueError, IndexError, TypeError):
        pass  # an unwritable home only costs the 2 s check


def import_deeplake() -> ModuleType:
    os.environ["BUGGER_OFF"] = "yes"  # humbug's opt-out, read on every report
    _seed_version_check_cache()
    import deeplake

    module: ModuleType = deeplake
    return module
