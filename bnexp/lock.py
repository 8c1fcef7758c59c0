"""One writer per experiment folder, with kernel locks (flock) rather than pid files: a lock dies with its
process, so there is no stale lock to take over and no pid to mistake for someone else's.

`.lock` is held exclusively by the `bnexp run` that writes the folder; its content (pid, host, start time) is
only for the message a second writer gets. `--jobs` workers hold `.lock-workers` shared while they live, so a
new run cannot start while orphaned workers of a killed one might still write.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bnexp.errors import BnexpError

LOCK_FILE = ".lock"
WORKERS_LOCK_FILE = ".lock-workers"


def _open(path: Path) -> int:
    if path.is_dir() or path.is_symlink():
        raise BnexpError(f"{path} is not bnexp's lock file ({'a directory' if path.is_dir() else 'a link'}); "
                         "remove it and run again")  # fmt: skip
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise BnexpError(f"{path}: cannot open the lock file ({e.strerror or e})") from None


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def experiment_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive right to write `out_dir` for the duration of the block."""
    path = out_dir / LOCK_FILE
    fd = _open(path)
    try:
        if not _try_lock(fd, fcntl.LOCK_EX):
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            raise BnexpError(f"{out_dir} is being written by another bnexp process ({holder}); wait for it to "
                             "finish or stop it, then run again")  # fmt: skip
        workers = _open(out_dir / WORKERS_LOCK_FILE)
        try:
            if not _try_lock(workers, fcntl.LOCK_EX):
                raise BnexpError(f"{out_dir}: worker processes of an earlier `bnexp run --jobs` are still alive "
                                 f"and may write here (they hold {WORKERS_LOCK_FILE}); stop them "
                                 f"(e.g. fuser -k {out_dir / WORKERS_LOCK_FILE}), then run again")  # fmt: skip
            fcntl.flock(workers, fcntl.LOCK_UN)
        finally:
            os.close(workers)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def hold_as_worker(out_dir: Path) -> int:
    """A --jobs worker's shared hold on the experiment (released when the process ends)."""
    fd = _open(out_dir / WORKERS_LOCK_FILE)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd
