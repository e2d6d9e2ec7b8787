"""`ChunkSource`: the chunks of a DeepLake dataset, streamed in batches."""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any, NamedTuple, Protocol

from pydantic import SecretStr

from dmflow.deadline import run_with_deadline
from dmflow.deeplake_support import import_deeplake, load_read_only, point_at_activeloop
from dmflow.errors import DmflowError
from dmflow.settings import Settings

REQUIRED_TENSORS = ("id", "text")


class Chunk(NamedTuple):
    id: str
    text: str


class ChunkSourceError(DmflowError):
    """The dataset cannot be used as a chunk source; the message says why and what to do."""


class ChunkSource(Protocol):
    @property
    def total(self) -> int:
        """Chunks in the dataset."""
        ...

    def batches(self, batch_size: int, skip: Container[str] = ()) -> Iterator[list[Chunk]]:
        """Full batches of the chunks whose id is not in `skip`, in dataset order."""
        ...


def _as_str(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


class DeepLakeChunkSource:
    """Chunks of a DeepLake 3.9 dataset in the VectorStore layout (`id`, `text`, ...).

    Opened with the low-level `deeplake.load(read_only=True)`: the VectorStore
    constructor calls Activeloop's API even for a local path. Only the ids are
    read up front (to validate them and know the total); texts are read one
    window at a time.
    """

    def __init__(
        self,
        path: str,
        *,
        token: SecretStr | None = None,
        activeloop_endpoint: str | None = None,
        open_deadline_s: float = 60.0,
        read_window: int = 256,
    ) -> None:
        self.path = path
        self._window = read_window
        if activeloop_endpoint and path.startswith("hub://"):
            import_deeplake()
            point_at_activeloop(activeloop_endpoint)
        self._dataset = run_with_deadline(
            open_deadline_s, f"opening {path}", lambda: self._open(path, token)
        )
        missing = [t for t in REQUIRED_TENSORS if t not in self._dataset.tensors]
        if missing:
            raise ChunkSourceError(
                f"dataset {path} has no {' or '.join(repr(t) for t in missing)} tensor "
                f"(it has: {', '.join(sorted(self._dataset.tensors)) or 'none'}); dmflow reads "
                "the VectorStore layout: tensors `id` and `text` (and `embedding`)"
            )
        self._ids = self._read_ids()

    @staticmethod
    def _open(path: str, token: SecretStr | None) -> Any:
        is_hub = path.startswith("hub://")
        if is_hub and token is None:
            raise ChunkSourceError(
                f"{path} is an Activeloop dataset: set DMFLOW_ACTIVELOOP_TOKEN to a token "
                "with read access"
            )
        dataset = load_read_only(path, token)
        if dataset is None:
            where = "" if is_hub else " (check the path and that it is a DeepLake 3.x dataset)"
            raise ChunkSourceError(f"no DeepLake dataset at {path}{where}")
        return dataset

    def _read_ids(self) -> list[str]:
        total = len(self._dataset)
        if total == 0:
            raise ChunkSourceError(f"dataset {self.path} is empty: there are no chunks to train on")
        ids = [_as_str(v) for v in self._dataset.id.numpy(aslist=True)]
        blank = [index for index, value in enumerate(ids) if not value.strip()]
        if blank:
            raise ChunkSourceError(
                f"dataset {self.path} has {len(blank)} chunk(s) with an empty id "
                f"(first at row {blank[0]}): give every chunk a unique id"
            )
        seen: set[str] = set()
        duplicates: list[str] = []
        for value in ids:
            if value in seen:
                duplicates.append(value)
            seen.add(value)
        if duplicates:
            shown = ", ".join(repr(d) for d in duplicates[:5])
            raise ChunkSourceError(
                f"dataset {self.path} has {len(duplicates)} duplicate chunk id(s), e.g. {shown}: "
                "chunk ids must be unique, since pairs and progress are keyed by them"
            )
        return ids

    @property
    def total(self) -> int:
        return len(self._ids)

    def batches(self, batch_size: int, skip: Container[str] = ()) -> Iterator[list[Chunk]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        pending: list[Chunk] = []
        for start in range(0, len(self._ids), self._window):
            stop = min(start + self._window, len(self._ids))
            wanted = [i for i in range(start, stop) if self._ids[i] not in skip]
            if not wanted:
                continue  # a window already done: its texts are never read
            texts = self._dataset.text[start:stop].numpy(aslist=True)
            pending.extend(Chunk(self._ids[i], _as_str(texts[i - start])) for i in wanted)
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending


def open_chunk_source(dataset: str, settings: Settings) -> DeepLakeChunkSource:
    return DeepLakeChunkSource(
        dataset,
        token=settings.activeloop_token,
        activeloop_endpoint=settings.activeloop_endpoint,
        open_deadline_s=settings.activeloop_request_deadline_s,
    )
