"""A failure dmflow explains is logged as one line; its traceback only at debug level.

Prefect logs every exception that ends a task or flow run with its traceback, once
per level it passes through: an LLM endpoint that refuses connections printed
three 40-line tracebacks (task, subflow, parent), in the terminal and in the
Prefect UI, with the one sentence that says what to do at the end of each. For a
`DmflowError` that sentence is the whole story, so the record keeps only it. Any
other exception is a bug or a surprise and keeps its traceback.
"""

from __future__ import annotations

import logging

from dmflow.errors import DmflowError
from dmflow.redaction import ScrubbedArgument, describe

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _Described:
    """Stands in for the exception in the record's arguments: Prefect formats it with
    %r, which printed `GenerationFailed('... it\\'s ...')` with its quotes escaped."""

    def __init__(self, exc: BaseException) -> None:
        self.text = describe(exc)

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _described(arg: object) -> object:
    original = arg.original if isinstance(arg, ScrubbedArgument) else arg
    return _Described(original) if isinstance(original, BaseException) else arg


class ExplainedFailureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, DmflowError):
            return True
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True  # debug level: the record as Prefect wrote it, traceback and all
        record.exc_info = None
        record.exc_text = None
        if isinstance(record.args, tuple):
            record.args = tuple(_described(arg) for arg in record.args)
        return True


_FILTER = ExplainedFailureFilter()


def install() -> None:
    """On Prefect's run loggers (a logger's filters outlive Prefect's logging set-up,
    which replaces handlers); adding it twice is harmless."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
