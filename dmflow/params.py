"""The parameters a run is started with, stored in the run's `params` column."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self, TypeVar
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# The types a field and the parent flow's argument share, so that the bounds reach the
# Prefect UI's form.
QuestionsPerChunk = Annotated[int, Field(ge=1, le=10)]
MaxPairs = Annotated[int, Field(ge=1)]
BatchSize = Annotated[int, Field(ge=1, le=1000)]
Seconds = Annotated[float, Field(gt=0)]


def _blank_is_unset(value: object) -> object:
    return None if value == "" or value == [] or value == () else value


# An optional value shows in the form as its type with a blank default: with a null
# default the form offers a "None" toggle ("Property is type 'None'") and sends null,
# which the server's schema check refuses. A blank ("" or []) means the default.
OptionalText = Annotated[
    str | None, BeforeValidator(_blank_is_unset), WithJsonSchema({"type": "string"})
]
OptionalUser = Annotated[
    UUID | None, BeforeValidator(_blank_is_unset), WithJsonSchema({"type": "string"})
]
OptionalIntervals = Annotated[
    list[float] | None,
    BeforeValidator(_blank_is_unset),
    WithJsonSchema({"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}),
]
BLANK: Any = ""
"""The parent flow's default for an optional text argument (the form's blank)."""
NO_ITEMS: Any = ()
"""The parent flow's default for an optional list argument."""


class RunParams(BaseModel):
    """How a run generates and trains. Unknown keys (written by dmflow as it goes) are kept."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    generator: Literal["local", "openai"] = "local"
    """`local`: offline and deterministic; `openai`: any OpenAI-compatible endpoint."""
    model: OptionalText = None
    """The LLM for `openai` (default: DMFLOW_LLM_MODEL)."""
    questions_per_chunk: QuestionsPerChunk = 4
    """Questions asked of each chunk (1-10)."""
    prompt: Literal["list", "one_question"] = "list"
    """How `openai` asks: `list`, a chunk's questions as a JSON array in one request;
    `one_question`, one question per request in plain words (small self-hosted models)."""
    max_pairs: MaxPairs = 5000
    """Generation stops when the run holds this many pairs."""
    sample: Literal["spread", "in_order"] = "spread"
    """Which chunks a run the cap stops early asks: `spread`, a deterministic sample over
    the whole dataset (and its documents); `in_order`, the dataset's first rows."""
    sample_seed: int = 7
    """Picks the spread sample: the same seed, dataset and cap give the same chunks."""
    batch_size: BatchSize = 256
    """Chunks per Prefect task (1-1000). Each task run costs Prefect's server ~30 ms of
    CPU and three events: the local generator asks 256 chunks in about as long."""
    train: bool = True
    """False: the run waits at `generated` for review; `dmflow recover` trains it."""
    trainer: Literal["local", "managed"] = "local"
    """`local`: an offline query adapter next to the dataset; `managed`: Activeloop."""
    embedder: OptionalText = None
    """How questions are embedded; it must be what made the dataset's embeddings
    (default: the name the dataset records, else hashing-512). Set on the run at start."""
    include_previous_runs: bool = False
    """Incremental retraining: also train on the pairs of the dataset's earlier completed runs."""
    poll_intervals_s: OptionalIntervals = None
    """Waits between job status checks, the last one repeating (default: the trainer's)."""
    training_timeout_s: Seconds = 6 * 3600
    """How long training may take, in seconds, before the run fails as timed out."""

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> Self:
        """The run's parameters out of a call's arguments (a flow's `locals()`): every
        field of this model, nothing else."""
        return cls.model_validate({name: arguments[name] for name in cls.model_fields})


Documented = TypeVar("Documented", bound=Callable[..., Any])


def documented_parameters(**others: str) -> Callable[[Documented], Documented]:
    """Append an `Args:` section to a flow's docstring: RunParams' field docstrings, and
    `others` for its other arguments. Prefect reads it into the deployment's form, so the
    descriptions are written once, on the fields."""

    def document(fn: Documented) -> Documented:
        described = {**others}
        for name, field in RunParams.model_fields.items():
            described[name] = " ".join((field.description or "").split())
        args = [f"    {name}: {text}" for name, text in described.items() if text]
        fn.__doc__ = "\n".join([(fn.__doc__ or "").rstrip(), "", "Args:", *args])
        return fn

    return document
