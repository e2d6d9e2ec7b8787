"""A .env chooses the database, binaries and endpoints dmflow trusts with its secrets:
it is read only when this user wrote it and nobody else can write it."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from dmflow.settings import Settings


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("DMFLOW_"):
            monkeypatch.delenv(key)
    path = tmp_path / ".env"
    path.write_text("DMFLOW_POSTGRES_BIN_DIR=/home/other/evil-bin\n")
    path.chmod(0o600)
    return path


def test_the_user_s_own_env_file_is_read(env_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings().postgres_bin_dir == Path("/home/other/evil-bin")


def test_an_env_file_others_can_write_is_ignored_with_a_warning(env_file: Path) -> None:
    env_file.chmod(0o666)
    with pytest.warns(UserWarning, match=r"ignoring .*\.env.*chmod go-w"):
        assert Settings().postgres_bin_dir is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_another_user_s_env_file_is_ignored_with_a_warning(env_file: Path) -> None:
    shutil.chown(env_file, "nobody")
    with pytest.warns(UserWarning, match="belongs to uid 65534"):
        assert Settings().postgres_bin_dir is None
