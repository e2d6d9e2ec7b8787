"""dmflow core: everything that is not Prefect.

Models, status rules, the run store, settings and the embedded database live
here so they can be used (and tested) without the workflow engine.
"""

import os

from dmflow.memory import keep_malloc_bounded

__version__ = "0.1.0"

# Telemetry off wherever dmflow's code runs (the CLI, `dmflow serve`, a worker, plain
# Python): no usage reports from a Prefect server started here (the temporary one too)
# nor from deeplake. A value set on purpose is kept.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BUGGER_OFF", "yes")
# The client side too: Prefect's client reports usage to a server whose analytics are on
# (a PREFECT_API_URL of someone else's) unless DO_NOT_TRACK says no.
os.environ.setdefault("DO_NOT_TRACK", "1")
# Prefect's temporary server (a flow run from plain Python without PREFECT_API_URL)
# creates and migrates its database on first use: often past Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# Every log record of the process is scrubbed of secrets when it is made, whichever
# handler (the terminal, Prefect's API) it goes to.
from dmflow.redaction import scrub_every_log_record

scrub_every_log_record()

# Before this process starts threads or reads a chunk: malloc keeps freed memory otherwise.
keep_malloc_bounded()
