"""A failure dmflow explains is logged as one line, any other with its traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import flows  # noqa: F401  (installs the filter, as every flow process does)
from dmflow.errors import ConfigurationError
from flows.failure_logs import RUN_LOGGERS


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter("%(levelname)s %(message)s").format(record))


@pytest.fixture(params=RUN_LOGGERS)
def run_logger(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, Collected]]:
    logger = logging.getLogger(request.param)
    # Only this handler: Prefect's own would send the records to an API outside any run.
    handler, level, handlers = Collected(), logger.level, logger.handlers[:]
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    try:
        yield logger, handler
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def fail(logger: logging.Logger, exc: Exception) -> None:
    """What Prefect's flow engine does when a flow raises."""
    try:
        raise exc
    except Exception as raised:
        logger.exception("Encountered exception during execution: %r", raised)


def test_an_explained_failure_is_one_scrubbed_line(
    run_logger: tuple[logging.Logger, Collected],
) -> None:
    logger, handler = run_logger
    fail(logger, ConfigurationError("postgresql://u:hunter2@db/x refused: it's down"))
    [line] = handler.lines
    assert line == (
        "ERROR Encountered exception during execution: "
        "ConfigurationError: postgresql://u:***@db/x refused: it's down"
    )


def test_at_debug_level_the_traceback_stays(run_logger: tuple[logging.Logger, Collected]) -> None:
    logger, handler = run_logger
    logger.setLevel(logging.DEBUG)
    fail(logger, ConfigurationError("x"))
    assert "Traceback (most recent call last)" in handler.lines[0]


def test_any_other_failure_keeps_its_traceback(
    run_logger: tuple[logging.Logger, Collected],
) -> None:
    logger, handler = run_logger
    fail(logger, KeyError("chunk"))
    assert "Traceback (most recent call last)" in handler.lines[0]
    assert "KeyError('chunk')" in handler.lines[0]
