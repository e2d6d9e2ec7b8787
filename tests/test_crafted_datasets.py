"""A crafted DeepLake dataset never runs code in dmflow's process.

deeplake 3.9 unpickles `version_control_info` when `version_control_info.json` is
missing. Each test plants a pickle that would create a marker file when unpickled."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from dmflow.chunks import open_chunk_source
from dmflow.deeplake_support import UnsafeDataset, import_deeplake
from dmflow.settings import Settings
from tests.fixtures.cli import CliRunner, clean_env
from tests.fixtures.datasets import MakeDataset


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def planted(path: str, marker: Path) -> bytes:
    """The dataset at `path` with its JSON version file replaced by a pickle."""
    payload = pickle.dumps(_Payload(marker))
    os.remove(Path(path) / "version_control_info.json")
    (Path(path) / "version_control_info").write_bytes(payload)
    return payload


def test_a_local_dataset_with_a_pickled_version_file_is_refused(
    make_dataset: MakeDataset, tmp_path: Path
) -> None:
    path = make_dataset([("a", "some text"), ("b", "more text")])
    marker = tmp_path / "pwned"
    planted(path, marker)
    with pytest.raises(UnsafeDataset, match=r"version_control_info\.json"):
        open_chunk_source(path, Settings(data_dir=tmp_path / "data"))
    assert not marker.exists()


def test_dmflow_run_refuses_it_with_one_line(
    dmflow: CliRunner, flow_env: dict[str, str], make_dataset: MakeDataset, tmp_path: Path
) -> None:
    path = make_dataset([("a", "some text"), ("b", "more text")])
    marker = tmp_path / "pwned"
    planted(path, marker)
    result = dmflow("run", path, "--no-train", env=clean_env(**flow_env))
    assert result.returncode != 0
    assert "version_control_info.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_deeplake_itself_never_unpickles_a_version_file(tmp_path: Path) -> None:
    # What a hub:// dataset someone else can write reaches: deeplake's own loader,
    # with no local directory to check first.
    import_deeplake()
    from deeplake.util.version_control import load_version_info

    marker = tmp_path / "pwned"
    storage = {"version_control_info": pickle.dumps(_Payload(marker))}
    with pytest.raises(UnsafeDataset):
        load_version_info(storage)  # type: ignore[arg-type]
    assert not marker.exists()
