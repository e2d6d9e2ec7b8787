"""Reading chunks from real local DeepLake datasets, and refusing bad ones clearly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmflow.chunks import ChunkSourceError, DeepLakeChunkSource, ids_checked_by_the_caller
from dmflow.deeplake_support import import_deeplake
from tests.fixtures.datasets import MakeDataset

ROWS = [(f"c{n}", f"text of chunk {n}") for n in range(10)]


def test_streams_every_chunk_in_batches(make_dataset: MakeDataset) -> None:
    source = DeepLakeChunkSource(make_dataset(ROWS), read_window=3)
    assert source.total == 10
    batches = list(source.batches(4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [c for b in batches for c in b] == [(i, t) for i, t in ROWS]


def test_skips_recorded_chunks_and_keeps_batches_full(make_dataset: MakeDataset) -> None:
    source = DeepLakeChunkSource(make_dataset(ROWS), read_window=3)
    done = {"c0", "c1", "c2", "c5"}
    batches = list(source.batches(4, skip=done))
    assert [len(b) for b in batches] == [4, 2]
    assert [c.id for b in batches for c in b] == ["c3", "c4", "c6", "c7", "c8", "c9"]
    assert list(source.batches(4, skip={i for i, _ in ROWS})) == []


def test_sample_corpus_is_real_documentation(sample_texts: dict[str, str]) -> None:
    assert len(sample_texts) > 300
    words = [len(text.split()) for text in sample_texts.values()]
    assert sum(words) > 60_000
    assert sum(1 for w in words if 100 <= w <= 300) / len(words) > 0.9
    assert any("for" in text and "iterable" in text for text in sample_texts.values())


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ChunkSourceError, match=r"no DeepLake dataset at .*check the path"):
        DeepLakeChunkSource(str(tmp_path / "nope"))


def test_not_a_deeplake_dataset(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hello")
    with pytest.raises(ChunkSourceError, match="no DeepLake dataset"):
        DeepLakeChunkSource(str(tmp_path / "folder"))


@pytest.mark.parametrize(
    ("tensors", "missing"), [(("id", "embedding"), "'text'"), (("text", "embedding"), "'id'")]
)
def test_missing_tensors(make_dataset: MakeDataset, tensors: tuple[str, ...], missing: str) -> None:
    with pytest.raises(ChunkSourceError, match=f"has no {missing} tensor"):
        DeepLakeChunkSource(make_dataset(ROWS, tensors=tensors))


def test_empty_dataset(make_dataset: MakeDataset) -> None:
    with pytest.raises(ChunkSourceError, match="is empty"):
        DeepLakeChunkSource(make_dataset([]))


def test_empty_ids(make_dataset: MakeDataset) -> None:
    with pytest.raises(ChunkSourceError, match=r"1 chunk\(s\) with an empty id \(first at row 2"):
        DeepLakeChunkSource(make_dataset([("a", "x"), ("b", "y"), ("  ", "z")]))


def test_duplicate_ids(make_dataset: MakeDataset) -> None:
    with pytest.raises(ChunkSourceError, match=r"1 duplicate chunk id.*'a'"):
        DeepLakeChunkSource(make_dataset([("a", "x"), ("b", "y"), ("a", "z")]))


def test_ids_that_differ_only_by_a_nul_are_duplicates(make_dataset: MakeDataset) -> None:
    # The database stores ids without NULs: one chunk would silently replace the other.
    with pytest.raises(ChunkSourceError, match=r"1 duplicate chunk id.*'a'"):
        DeepLakeChunkSource(make_dataset([("a", "x"), ("b", "y"), ("a\x00", "z")]))


def test_an_id_too_long_to_key_the_ledger_is_refused_with_its_row(
    make_dataset: MakeDataset,
) -> None:
    rows = [("a", "x"), ("b", "y"), ("c" * 2800, "z")]
    with pytest.raises(ChunkSourceError, match=r"chunk id of 2800 bytes at row 2.*up to 1024"):
        DeepLakeChunkSource(make_dataset(rows))


def test_hub_dataset_without_token() -> None:
    with pytest.raises(ChunkSourceError, match="DMFLOW_ACTIVELOOP_TOKEN"):
        DeepLakeChunkSource("hub://org/dataset")


@pytest.mark.parametrize("background", [False, True], ids=["imported", "while-importing"])
def test_importing_deeplake_leaves_asyncio_s_own_tasks_and_loop(background: bool) -> None:
    # deeplake's S3 module applies nest_asyncio at import when aioboto3 is installed (it
    # is: a deeplake dependency), which made every task of a run pure Python. The CLI
    # starts the import in the background: a dataset opened meanwhile gets the same
    # guarded module, its pickle fallback refused.
    probe = (
        "import asyncio, _asyncio\n"
        "from dmflow import deeplake_support as support\n"
        f"if {background}: support.start_importing_deeplake()\n"
        "deeplake = support.import_deeplake()\n"
        "from deeplake.util import version_control\n"
        "assert version_control.pickle is support._NoUnpickling\n"
        "assert callable(deeplake.load)\n"
        "import deeplake.core.storage.s3 as s3\n"
        "assert s3.aioboto3 is not None, 'aioboto3 is gone: nothing left to check'\n"
        "print(asyncio.Task is _asyncio.Task, hasattr(asyncio, '_nest_patched'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]


def test_a_dataset_changed_after_its_check_is_checked_again(make_dataset: MakeDataset) -> None:
    path = make_dataset(ROWS)
    checked = DeepLakeChunkSource(path).checked_ids
    deeplake = import_deeplake()
    with deeplake.load(path) as dataset:
        dataset.append(
            {"id": "c1", "text": "a second c1", "embedding": np.ones(8, np.float32), "metadata": {}}
        )
    with ids_checked_by_the_caller(checked), pytest.raises(ChunkSourceError, match="duplicate"):
        DeepLakeChunkSource(path)


def _id_and_text_dataset(path: str, rows: int, text_of: Callable[[int], str]) -> None:
    """`id` and `text` tensors, appended 1,000 rows at a time as an ingest does."""
    dataset = import_deeplake().empty(path, overwrite=True, verbose=False)
    with dataset:
        dataset.create_tensor("id", htype="text")
        dataset.create_tensor("text", htype="text")
        for start in range(0, rows, 1_000):
            rows_now = range(start, start + 1_000)
            dataset.id.extend([f"chunk-{n:06d}" for n in rows_now])  # a tensor at a time:
            dataset.text.extend([text_of(n) for n in rows_now])  # 10x faster to make


def _count_chunk_reads(
    monkeypatch: pytest.MonkeyPatch, *, fail_after: int | None = None
) -> dict[str, int]:
    """How often each storage chunk is read from disk, from now on; with `fail_after`, a
    chunk read more often fails at once (read again and again: not in minutes)."""
    from deeplake.core.storage.local import LocalProvider

    reads: dict[str, int] = {}
    read = LocalProvider.__getitem__

    def counted(self: LocalProvider, key: str) -> bytes:
        if "/chunks/" in key:
            reads[key] = reads.get(key, 0) + 1
            if fail_after is not None and reads[key] > fail_after:
                raise AssertionError(f"{key} read {reads[key]} times")
        return read(self, key)

    monkeypatch.setattr(LocalProvider, "__getitem__", counted)
    return reads


def test_a_storage_chunk_as_large_as_deeplake_makes_it_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short ids, appended 1,000 at a time as an ingest does, fill storage chunks up to
    deeplake's largest size (16 MB; 700,000 ids here, the first 670,000 of a 1,000,000
    chunk store). With a cache smaller than that, the id check read the whole storage
    chunk from disk again for every row: over 16 minutes for 1,000,000 chunks."""
    path = str(tmp_path / "large-chunks")
    _id_and_text_dataset(path, 700_000, lambda n: f"chunk-{n:06d}")
    reads = _count_chunk_reads(monkeypatch, fail_after=3)
    source = DeepLakeChunkSource(path)  # checks every id
    assert source.total == 700_000
    largest = max(Path(path, key).stat().st_size for key in reads)
    assert largest > 14_000_000, largest  # the case: a chunk near deeplake's largest
    assert max(reads.values()) == 1, reads


def test_streaming_keeps_only_the_storage_chunk_each_tensor_is_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deeplake keeps every chunk read until its cache is full: a run over a large
    dataset carried a whole cache of chunks it never read again (40 MiB of its growth
    at 100,000 chunks). Each chunk is still read from disk once."""
    path = str(tmp_path / "several-chunks")
    _id_and_text_dataset(path, 24_000, lambda n: f"{n} " + "words " * 200)
    reads = _count_chunk_reads(monkeypatch)
    source = DeepLakeChunkSource(path)
    cached_at_most: dict[str, int] = {}
    streamed = 0
    for batch in source.batches(256):
        streamed += len(batch)
        for tensor in ("id", "text"):
            held = [key for key in source._dataset.storage.lru_sizes if key.startswith(tensor)]
            chunks = sum("/chunks/" in key for key in held)
            cached_at_most[tensor] = max(cached_at_most.get(tensor, 0), chunks)
    text_chunks = [key for key in reads if key.startswith("text/")]
    assert streamed == 24_000 and len(text_chunks) >= 3, reads  # the case: several chunks
    assert max(reads.values()) == 1, reads
    # One chunk of each, two while a window spans the end of one and the start of the next.
    assert cached_at_most["id"] == 1 and cached_at_most["text"] <= 2, cached_at_most
