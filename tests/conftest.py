"""Fixtures are grouped by the real system they start (see tests/fixtures/)."""

import os
from collections.abc import Iterator

import pytest

# Keep every test offline and quiet, whatever the developer's environment says.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.cli",
    "tests.fixtures.datasets",
    "tests.fixtures.llm_server",
    "tests.fixtures.prefect",
    "tests.fixtures.activeloop_server",
    "tests.fixtures.supabase_cli",
]


@pytest.fixture(autouse=True)
def _close_shared_stores() -> Iterator[None]:
    """Each test's flows open the process's store for that test's database: close it
    after the test, before the database is dropped."""
    yield
    from dmflow import resources

    resources.close_all()


def pytest_unconfigure(config: object) -> None:
    from flows.runtime import release_stray_worker_threads

    release_stray_worker_threads()
