"""Who may write what, with kernel locks (flock) rather than pid files: a lock dies with its process, so there
is no stale lock to take over and no pid to mistake for someone else's.

Several `bnexp run` processes, on one machine or on machines that share a filesystem, may fill one experiment
folder together (`--shard I/N`, or the same command started twice): each run's folder has its own `.lock`,
held exclusively by the process that writes that run (a `--jobs` worker, rank 0 of a multi-process run), so
two processes never train one run, and an orphaned worker still blocks its own run only. The experiment's
`.lock` is held shared by every writer; the one that finds it free holds it exclusively for a moment to clean
up what interrupted writes left at the experiment level. A lock's content (pid, host, start time) is only for
the message another process gets.

On a network filesystem flock must reach the server: NFSv4 does (Linux maps flock to byte-range locks there);
Lustre needs the `flock` mount option.
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from bnexp.errors import BnexpError

LOCK_FILE = ".lock"  # in the experiment folder (shared by writers) and in each run folder (one writer)
ANALYSES_LOCK_FILE = ".lock-analyses"


class Busy(BnexpError):
    """Another process holds the lock; `holder` says who (pid, host, since when)."""

    def __init__(self, holder: str):
        super().__init__(f"being written by another bnexp process ({holder})")
        self.holder = holder


def _open(path: Path, create: bool = True) -> int:
    if path.is_dir() or path.is_symlink():
        raise BnexpError(
            f"{path} is not bnexp's lock file ({'a directory' if path.is_dir() else 'a link'}); remove it and run again"
        )
    try:
        fd = os.open(path, (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        raise BnexpError(f"{path}: cannot open the lock file ({e.strerror or e})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device: flock fails on it (EINVAL)
        os.close(fd)
        raise BnexpError(f"{path} is not bnexp's lock file (not a regular file); remove it and run again")
    return fd


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"


def _sign(fd: int) -> None:
    """Who holds the lock, for the message another process gets; only that: a full disk must not stop the run
    here (its own writes then fail, and mark that run failed)."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)


@contextmanager
def experiment_lock(out_dir: Path, when_alone: Callable[[], None] = lambda: None) -> Iterator[bool]:
    """The right to write `out_dir` beside the other writers (each run is then claimed with `run_lock`).
    `when_alone` runs while no other writer can be there; yields whether this process was alone."""
    fd = _open(out_dir / LOCK_FILE)
    try:
        alone = _try_lock(fd, fcntl.LOCK_EX)
        if alone:
            _sign(fd)
            when_alone()
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only for another writer's moment alone
        yield alone
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """The exclusive right to write one run's folder (which must exist); Busy if another process has it."""
    fd = _open(run_dir / LOCK_FILE)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            raise Busy(_holder(fd))
        _sign(fd)
        yield
    finally:
        os.close(fd)


@contextmanager
def alone(out_dir: Path, name: str = ANALYSES_LOCK_FILE) -> Iterator[bool]:
    """Yields whether this process got `out_dir/name` exclusively (another holder: False, nothing waits)."""
    fd = _open(out_dir / name)
    try:
        yield _try_lock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock exclusively right now (None: nobody); creates nothing, so a dry run may ask. A
    lock file that cannot be opened (missing, a link) is nobody's: claiming the run names what is wrong."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return None if _try_lock(fd, fcntl.LOCK_SH) else _holder(fd)
    finally:
        os.close(fd)
