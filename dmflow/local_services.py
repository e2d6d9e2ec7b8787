"""What the embedded servers (PostgreSQL, Prefect) share: directories only their owner
controls, a lock file that serialises the commands starting them, and a free port on
loopback."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dmflow.errors import ConfigurationError


def owned_directory(path: Path, *, also_owned_by: int | None = None) -> Path:
    """`path`, created 0700 if missing. An existing one must be a real directory (not a
    symbolic link: as root, dmflow hands some directories to the `postgres` user, and a
    link would hand over its target) owned by this user, or by `also_owned_by` (the
    server user of a directory dmflow gave it)."""
    path = path.expanduser().absolute()
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode):
        raise ConfigurationError(
            f"{path} is a symbolic link: dmflow uses only real directories there (a link "
            "could point anywhere). Set DMFLOW_DATA_DIR to the link's target instead"
        )
    if not stat.S_ISDIR(found.st_mode):
        raise ConfigurationError(f"{path} is not a directory: move it away or set DMFLOW_DATA_DIR")
    if found.st_uid not in (os.geteuid(), also_owned_by):
        raise ConfigurationError(
            f"{path} belongs to another user (uid {found.st_uid}): dmflow keeps its servers "
            "and secrets only in directories you own. Set DMFLOW_DATA_DIR to one of yours"
        )
    if found.st_uid == os.geteuid() and found.st_mode & 0o066:
        # Made before dmflow with a wider mode (mkdir -m755): nobody else lists it or
        # writes in it. Passing through stays allowed: as root, the `postgres` user
        # reaches its cluster directory inside.
        os.chmod(path, stat.S_IMODE(found.st_mode) & ~0o066)
    return path


def open_no_follow(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open `path` without following a symbolic link at its last component, nor at its
    directory's (a directory another user owns, such as the cluster's, which the
    `postgres` user could fill with links to root's files). A link there is refused."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return os.open(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigurationError(
                f"{path} is a symbolic link, which dmflow never follows there (another user "
                "may have put it there): remove it and run the command again"
            ) from None
        raise
    finally:
        os.close(directory)


def _own_regular_file(fd: int, path: Path) -> None:
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
        os.close(fd)
        raise ConfigurationError(
            f"{path} is not a plain file of its own (a device, a hard link to another file): "
            "dmflow refuses to use it; remove it and run the command again"
        )


def write_private(path: Path, text: str, *, owner: tuple[int, int] | None = None) -> None:
    """Write a file only its owner can read, from its first byte (and after, if it
    existed with a wider mode), never through a link; `owner` (uid, gid) hands it over."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT)
    _own_regular_file(fd, path)
    os.fchmod(fd, 0o600)
    if owner is not None:
        os.fchown(fd, *owner)
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def read_private(path: Path, limit: int = 4096) -> str:
    """A small file dmflow wrote, never read through a link (a link to a secret of root's
    would send it to whoever listens on the port the same directory names)."""
    fd = open_no_follow(path, os.O_RDONLY)
    _own_regular_file(fd, path)
    with os.fdopen(fd, "r") as file:
        return file.read(limit)


def touch_private(path: Path, *, owner: tuple[int, int] | None = None) -> None:
    """Create `path` if missing, 0600, never through a link; `owner` hands it over."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    _own_regular_file(fd, path)
    try:
        os.fchmod(fd, 0o600)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)


def reachable_by_others(path: Path) -> bool:
    """Whether every existing directory above `path` lets other users pass."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents if parent.exists())


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block."""
    with os.fdopen(open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_LISTEN = "0A"
_LOOPBACK_OR_ANY = {
    "0100007F",
    "00000000",
    "00000000000000000000000000000000",
    "00000000000000000000000001000000",
    "0000000000000000FFFF00000100007F",
}


def listening_uids(port: int) -> set[int] | None:
    """The owners (uids) of the TCP sockets listening on `port` on loopback or on every
    address, IPv4 and IPv6; None where the OS does not say (no /proc/net/tcp)."""
    uids: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    address, _, port_hex = fields[1].partition(":")
                    if fields[3] != _LISTEN or int(port_hex, 16) != port:
                        continue
                    if address.upper() in _LOOPBACK_OR_ANY:
                        uids.add(int(fields[7]))
        except FileNotFoundError:
            if table == "/proc/net/tcp":
                return None
    return uids
