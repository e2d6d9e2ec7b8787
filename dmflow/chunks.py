"""`ChunkSource`: the chunks of a DeepLake dataset, streamed in batches."""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import SecretStr

from dmflow.deadline import run_with_deadline
from dmflow.deeplake_support import (
    drop_chunks_read_before,
    import_deeplake,
    load_read_only,
    point_at_activeloop,
)
from dmflow.errors import DmflowError
from dmflow.redaction import storable
from dmflow.sampling import document_of
from dmflow.settings import Settings

REQUIRED_TENSORS = ("id", "text")

STREAMING_CACHE_MB = 40
"""deeplake's megabytes (10^6 bytes). Every read goes through windows in dataset order,
so the cache only has to hold the storage chunk of each of the two tensors read
together (id with text, or id with metadata): up to deeplake's largest chunk (16 MB and
a header) each, with room to spare; chunks already read are dropped after each window
(`drop_chunks_read_before`). At 16 MB, a dataset of short ids filled past one chunk
(from ~670,000 chunks) read its whole id chunk from disk again for every row."""
ID_CHECK_WINDOW = 8_192
"""Ids read at a time by the whole-dataset scans. deeplake hands each id over as an
array of its own (~700 bytes a row while a window is read): 65,536 at a time raised the
process's memory by ~47 MiB for the rest of the run."""
MAX_ID_BYTES = 1024
"""Well under PostgreSQL's ~2,700-byte limit for a B-tree key (the ledger's primary key)."""


class CheckedIds(NamedTuple):
    """A dataset whose ids were found usable: at this version, with this many rows."""

    path: str
    version: str
    rows: int


_checked_ids: ContextVar[frozenset[CheckedIds]] = ContextVar(
    "dmflow_checked_ids", default=frozenset()
)


@contextmanager
def ids_checked_by_the_caller(checked: CheckedIds | None) -> Iterator[None]:
    """Within this block (the phases of a run whose preflight checked the dataset), a
    chunk source opened on the same dataset, unchanged, does not read every id again."""
    if checked is None:
        yield
        return
    token = _checked_ids.set(_checked_ids.get() | {checked})
    try:
        yield
    finally:
        _checked_ids.reset(token)


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

    def batches(
        self,
        batch_size: int,
        skip: Container[str] = (),
        rows: npt.NDArray[np.bool_] | None = None,
    ) -> Iterator[list[Chunk]]:
        """Full batches of the chunks whose id is not in `skip` (and whose row is set in
        `rows`, when given), in dataset order."""
        ...

    def ids_and_documents(self) -> Iterator[tuple[str, str | None]]:
        """Every row's (chunk id, source document named by its metadata, or None)."""
        ...

    def rows_of(self, ids: Container[str]) -> npt.NDArray[np.bool_]:
        """Which rows hold a chunk whose id is in `ids`."""
        ...


def _id_hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little")


def _as_str(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


class DeepLakeChunkSource:
    """Chunks of a DeepLake 3.9 dataset in the VectorStore layout (`id`, `text`, ...).

    Opened with the low-level `deeplake.load(read_only=True)`: the VectorStore
    constructor calls Activeloop's API even for a local path. The ids are checked
    up front (none empty, none repeated) a window at a time, keeping only a 64-bit
    hash of each; ids and texts are then read one window at a time, so what stays in
    memory does not grow with the dataset (8 bytes a chunk, only while checking).
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
        self._total = len(self._dataset)
        self.checked_ids = CheckedIds(path, str(self._dataset.pending_commit_id), self._total)
        if self.checked_ids not in _checked_ids.get():
            self._check_ids()

    @property
    def tensor_names(self) -> list[str]:
        return list(self._dataset.tensors)

    @staticmethod
    def _open(path: str, token: SecretStr | None) -> Any:
        is_hub = path.startswith("hub://")
        if is_hub and token is None:
            raise ChunkSourceError(
                f"{path} is an Activeloop dataset: set DMFLOW_ACTIVELOOP_TOKEN to a token "
                "with read access"
            )
        dataset = load_read_only(path, token, memory_cache_mb=STREAMING_CACHE_MB)
        if dataset is None:
            where = "" if is_hub else " (check the path and that it is a DeepLake 3.x dataset)"
            raise ChunkSourceError(f"no DeepLake dataset at {path}{where}")
        return dataset

    def _id_windows(self, size: int) -> Iterator[tuple[int, list[str]]]:
        """(first row, ids) of each window of `size` rows, in dataset order."""
        for start in range(0, self._total, size):
            stop = min(start + size, self._total)
            # As the database will store them (no NUL, no lone surrogate): two ids that
            # differ only by those are the same id, caught by the duplicate check.
            values = self._dataset.id[start:stop].numpy(aslist=True)
            yield start, [storable(_as_str(v)) for v in values]
            # The window's other tensors (text, metadata) were read by now.
            drop_chunks_read_before(self._dataset)

    def _check_ids(self) -> None:
        if self._total == 0:
            raise ChunkSourceError(f"dataset {self.path} is empty: there are no chunks to train on")
        hashes = np.empty(self._total, dtype=np.uint64)
        for start, ids in self._id_windows(ID_CHECK_WINDOW):
            blank = [n for n, value in enumerate(ids) if not value.strip()]
            if blank:
                raise ChunkSourceError(
                    f"dataset {self.path} has {len(blank)} chunk(s) with an empty id "
                    f"(first at row {start + blank[0]}): give every chunk a unique id"
                )
            too_long = [n for n, value in enumerate(ids) if len(value.encode()) > MAX_ID_BYTES]
            if too_long:
                raise ChunkSourceError(
                    f"dataset {self.path} has a chunk id of "
                    f"{len(ids[too_long[0]].encode())} bytes at row {start + too_long[0]}: "
                    f"dmflow keys its ledger by chunk id and takes ids up to {MAX_ID_BYTES} "
                    "bytes; give the chunks shorter ids"
                )
            hashes[start : start + len(ids)] = [_id_hash(value) for value in ids]
        hashes.sort()
        repeated = np.flatnonzero(hashes[1:] == hashes[:-1])
        if len(repeated):
            self._report_duplicates(set(hashes[repeated].tolist()))

    def _report_duplicates(self, suspects: set[int]) -> None:
        """A second pass names the ids behind repeated hashes (almost surely repeated ids)."""
        seen: set[str] = set()
        duplicates: list[str] = []
        for _, ids in self._id_windows(ID_CHECK_WINDOW):
            for value in ids:
                if _id_hash(value) in suspects:
                    if value in seen:
                        duplicates.append(value)
                    seen.add(value)
        if duplicates:
            shown = ", ".join(repr(d) for d in duplicates[:5])
            raise ChunkSourceError(
                f"dataset {self.path} has {len(duplicates)} duplicate chunk id(s), e.g. {shown}: "
                "chunk ids must be unique, since pairs and progress are keyed by them"
            )

    @property
    def total(self) -> int:
        return self._total

    def batches(
        self,
        batch_size: int,
        skip: Container[str] = (),
        rows: npt.NDArray[np.bool_] | None = None,
    ) -> Iterator[list[Chunk]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        pending: list[Chunk] = []
        for start, ids in self._id_windows(self._window):
            wanted = [
                n
                for n, chunk_id in enumerate(ids)
                if (rows is None or rows[start + n]) and chunk_id not in skip
            ]
            if not wanted:
                continue  # a window already done: its texts are never read
            texts = self._dataset.text[start : start + len(ids)].numpy(aslist=True)
            pending.extend(Chunk(ids[n], _as_str(texts[n])) for n in wanted)
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending

    def rows_of(self, ids: Container[str]) -> npt.NDArray[np.bool_]:
        found = np.zeros(self._total, dtype=bool)
        for start, window in self._id_windows(ID_CHECK_WINDOW):
            found[start : start + len(window)] = [chunk_id in ids for chunk_id in window]
        return found

    def ids_and_documents(self) -> Iterator[tuple[str, str | None]]:
        has_metadata = "metadata" in self._dataset.tensors
        for start, ids in self._id_windows(self._window * 16):
            if not has_metadata:
                yield from ((chunk_id, None) for chunk_id in ids)
                continue
            metadata = self._dataset.metadata[start : start + len(ids)].numpy(aslist=True)
            for chunk_id, value in zip(ids, metadata, strict=True):
                yield chunk_id, document_of(value.item() if hasattr(value, "item") else value)


def check_usable(dataset: str, settings: Settings) -> CheckedIds:
    """Refuse, before a run exists for it, a dataset no phase can use: missing, without
    the VectorStore's `id`, `text` and `embedding` tensors, empty, or with ids that
    cannot key the ledger."""
    source = open_chunk_source(dataset, settings)  # refuses a missing or empty one itself
    if "embedding" not in source.tensor_names:
        raise ChunkSourceError(
            f"dataset {dataset} has no 'embedding' tensor (it has: "
            f"{', '.join(sorted(source.tensor_names))}): Deep Memory trains on the stored "
            "embeddings; write the dataset with DeepLake's VectorStore"
        )
    return source.checked_ids


def open_chunk_source(dataset: str, settings: Settings) -> DeepLakeChunkSource:
    return DeepLakeChunkSource(
        dataset,
        token=settings.activeloop_token,
        activeloop_endpoint=settings.activeloop_endpoint,
        open_deadline_s=settings.activeloop_request_deadline_s,
    )
