"""dmflow's Prefect flows, hooks and orchestration."""

# Before anything here imports Prefect: dmflow's import turns telemetry off for this
# process and every server it starts (a flow run from plain Python included).
import dmflow  # noqa: F401
from flows import failure_logs

failure_logs.install()
