"""The run store: the on-disk interface between training and everything that reads results.

    <out>/<experiment>/experiment.yaml        the whole resolved experiment config
    <out>/<experiment>/<run>/config.yaml      this run's resolved config (model, lr, seed, ...)
    <out>/<experiment>/<run>/metrics.jsonl    one JSON object per line, "event": "train" | "eval" | "diverged"
    <out>/<experiment>/<run>/timing.jsonl     wall times and images/s per evaluation interval
    <out>/<experiment>/<run>/probes.jsonl     activation distributions (when the config asks for probes)
    <out>/<experiment>/<run>/summary.json     status and headline numbers, written atomically
    <out>/<experiment>/<run>/error.log        traceback of a failed run
    <out>/<experiment>/<run>/checkpoint.pt    the latest training state (never committed)

metrics.jsonl and probes.jsonl hold only what the seed determines (no times), so a resumed run's files equal
an uninterrupted run's byte for byte. Non-finite numbers are stored as null: every file is strict JSON.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import yaml

from bnexp.errors import BnexpError

EXPERIMENT_FILE = "experiment.yaml"
CONFIG, SUMMARY, ERROR_LOG, CHECKPOINT = "config.yaml", "summary.json", "error.log", "checkpoint.pt"
METRICS, TIMING, PROBES = "metrics.jsonl", "timing.jsonl", "probes.jsonl"
WEIGHTS = "weights.pt"  # final weights (keep_final_weights), for post-training analyses; never committed
ANALYSES_DIR = "analyses"  # <run>/analyses/<name>.json, written by `bnexp analyze`
LOGS = (METRICS, TIMING, PROBES)
FINISHED = ("completed", "diverged")  # a summary's statuses of runs that are results; the others are parts of runs
KEPT_CHECKPOINT = re.compile(r"checkpoint-step[0-9]{8,}\.pt")  # --keep-checkpoints: checkpoint-step00001000.pt
WRITERS_CONFIG = ".writers-config.yaml"  # the config of the processes writing an experiment folder now (bnexp.lock)
COMMITTED_MARK = ".bnexp-committed"  # carried by a results folder whose runs are committed (this repo's results/)


def committed_folder(out: Path) -> Path | None:
    """The folder at or above `out` that carries COMMITTED_MARK (its runs are someone's committed results)."""
    here = Path(os.path.abspath(out))
    return next((p for p in (here, *here.parents) if os.path.isfile(p / COMMITTED_MARK)), None)  # no EACCES raised


class CorruptFile(BnexpError):
    """A run file that cannot be read back (truncated, garbage, wrong type)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


TEMP_MARK = ".bnexp-tmp-"  # in the names of atomic writes' temp files: `.<name>.bnexp-tmp-<random>`
_TEMP_NAME = re.compile(r"\.[^/]+" + re.escape(TEMP_MARK) + r"[A-Za-z0-9_]+")


class LinkRefused(BnexpError):
    """A link (or something that is not a plain folder or file) where bnexp would write."""


def real_dir(root: Path, path: Path) -> Path:
    """`path`, created if missing, with every component below `root` checked to be a real folder (never a link):
    what a results folder from someone else holds cannot send a write outside it. `root` itself is the user's
    choice (--out, or the results folder named on the command line) and is taken as it is."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise LinkRefused(f"{path} is not inside {root}") from None
    if any(part in ("", ".", "..") for part in parts):
        raise LinkRefused(f"{path}: not a plain path inside {root}")
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in parts:
        current = current / part
        with suppress(FileExistsError):
            os.mkdir(current)
        mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            raise LinkRefused(
                f"{current} is a link: bnexp never writes through links in a results folder; "
                "replace it with a real folder"
            )
        if not stat.S_ISDIR(mode):
            raise LinkRefused(f"{current} is not a folder")
    return path


def open_append(path: Path) -> IO[str]:
    """A log opened for appending (created if missing) that is never a link or a special file: O_NOFOLLOW, and a
    regular file checked on the open descriptor."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LinkRefused(f"{path} is a link: bnexp never writes through links in a results folder") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkRefused(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")  # never the locale's: records are UTF-8 everywhere


def read_regular(path: Path, binary: bool = False, follow: bool = True) -> Any:
    """A file's contents, only if it is a regular file (a FIFO or device would block or never end; a link is
    read only if it points at a regular file, and with follow=False, as for every file of a results folder, not
    at all: a link could point out of the folder)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW))
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CorruptFile(f"{path}: a link; files of a results folder are read only where they are") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptFile(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    return data if binary else data.decode("utf-8")


def strict_json(obj: Any, **kwargs: Any) -> str:
    """JSON that strict parsers accept: NaN and infinities are written as null (every bnexp file and --json)."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temp file in the same folder, fsynced and renamed over `path` on success: readers see the old file
    or the new one, never a partial one. The rename replaces a link at `path` rather than writing through it;
    callers check the folder (`real_dir`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}")
    try:
        try:  # a file that is replaced keeps its mode (a 0600 README stays 0600)
            old = os.lstat(path)
            permissions = old.st_mode & 0o777 if stat.S_ISREG(old.st_mode) else 0o666 & ~UMASK  # no setuid/sticky
        except FileNotFoundError:
            permissions = 0o666 & ~UMASK  # mkstemp makes 0600; run files get the same mode as the logs
        os.fchmod(fd, permissions)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_replaceable(path: Path, what: str) -> None:
    """A file the user named (a README, a report) is replaced by a new one: a link there would become a plain file
    (its target never updated) and a hard link would part, so both are refused (exit 2)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise BnexpError(f"{what}: {path} is a link; give the file it points to ({os.path.realpath(path)})")
    if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        raise BnexpError(
            f"{what}: {path} has {info.st_nlink} hard links, which replacing it would part; give a file of its own"
        )


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save, atomically. Serialized in memory first, so a full disk fails in a plain write
    ("No space left on device"), not inside torch's zip writer."""
    import torch  # late: reading a run store needs no torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getbuffer())


def load_tensors(path: Path, what: str, remedy: str) -> Any:
    """torch.load with weights_only=True: a file from someone else's results folder cannot run code.
    Anything unreadable is a CorruptFile naming the file and what to do."""
    import pickle
    import zipfile

    import torch

    try:  # the bytes of a regular file, not through a link (as every read of a results folder)
        return torch.load(
            io.BytesIO(read_regular(path, binary=True, follow=False)), map_location="cpu", weights_only=True
        )
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        message = f"{path}: {what} is unreadable or not a plain tensor file ({first[:200]}); {remedy}"
        raise CorruptFile(message) from None


def remove_temp_files(folder: Path) -> list[Path]:
    """Leftovers of interrupted atomic writes (`.<name>.bnexp-tmp-<random>`) in `folder`, and nothing else (a
    user's `.notes.md` stays); call with the lock held."""
    removed = []
    for p in folder.glob(f".*{TEMP_MARK}*"):
        if _TEMP_NAME.fullmatch(p.name) and (p.is_symlink() or p.is_file()):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def child_path(parent: Path, name: str) -> Path:
    """parent/name, refusing any name that would resolve outside `parent` (defence in depth: run names are
    validated as single path components when the config is read)."""
    if (parent / name).is_symlink():
        raise LinkRefused(f"{parent / name} is a link: bnexp never writes through links in a results folder")
    target = (parent / name).resolve()
    if target.parent != parent.resolve() or name in ("", ".", ".."):
        raise BnexpError(f"{name!r} is not a plain folder name inside {parent}")
    return parent / name


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class RunDir:
    """Writer and reader of one run's directory. Reading is strict: a file that does not parse is a
    CorruptFile naming it (callers decide whether to skip the run or stop)."""

    writes = True

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._files: dict[str, IO[str]] = {}
        self._missing: set[str] = set()
        self._identity: tuple[int, int] | None = None  # the run folder's (device, inode) since start()

    @property
    def name(self) -> str:
        return self.path.name

    def start(self, resolved_config: dict[str, Any], fresh: bool = True) -> None:
        """Create the directory and write the resolved config; `fresh` empties the logs (else they are
        appended to, after a checkpoint's `truncate`)."""
        real_dir(self.path.parent, self.path)
        info = os.lstat(self.path)
        self._identity = (info.st_dev, info.st_ino)
        remove_temp_files(self.path)
        write_atomic(self.path / CONFIG, dump_yaml(resolved_config))
        for name in (ERROR_LOG, SUMMARY):
            (self.path / name).unlink(missing_ok=True)
        if fresh:
            for name in (*LOGS, CHECKPOINT, WEIGHTS):
                (self.path / name).unlink(missing_ok=True)
            for old in self.path.glob("checkpoint-step*.pt"):
                if KEPT_CHECKPOINT.fullmatch(old.name):  # bnexp's own names only: a file of yours stays
                    old.unlink()
        # opening in "a" creates missing logs: remember which were missing for check_offsets
        self._missing = {name for name in LOGS if not (self.path / name).is_file()}
        self._files = {name: open_append(self.path / name) for name in LOGS}

    def _write(self, name: str, record: dict[str, Any]) -> None:
        self._files[name].write(json.dumps(_finite(record), allow_nan=False) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        self._write(METRICS, record)

    def log_timing(self, record: dict[str, Any]) -> None:
        self._write(TIMING, record)

    def log_probe(self, record: dict[str, Any]) -> None:
        self._write(PROBES, record)

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())

    def offsets(self) -> dict[str, int]:
        """Current lengths of the log files (call after flush)."""
        return {name: f.tell() for name, f in self._files.items()}

    def check_offsets(self, offsets: dict[str, int]) -> None:
        """The logs must hold at least what a checkpoint recorded, ending at a line boundary; else resuming
        would pad them or cut a line."""
        for name, offset in offsets.items():
            p = self.path / name
            size = -1 if name in self._missing else p.stat().st_size
            if offset and size < offset:
                found = "is missing" if size < 0 else f"has {size} bytes"
                raise CorruptFile(
                    f"{p} {found}, the checkpoint expects at least {offset}: the run's logs were "
                    "deleted or cut after its last checkpoint"
                )
            if offset:
                with p.open("rb") as f:
                    f.seek(offset - 1)
                    if f.read(1) != b"\n":
                        raise CorruptFile(
                            f"{p}: no line ends at byte {offset}, where the checkpoint says the "
                            "log ended: the file was changed after the checkpoint"
                        )

    def truncate(self, offsets: dict[str, int]) -> None:
        """Cut the logs back to a checkpoint's offsets: lines written after it are written again on resume."""
        for name, f in self._files.items():
            f.flush()
            f.truncate(offsets.get(name, 0))
            f.seek(offsets.get(name, 0))

    def close(self) -> None:
        if self._files:
            self.flush()
            for f in self._files.values():
                f.close()
            self._files = {}

    def check_folder(self) -> None:
        """Before each write by path (checkpoint, weights, summary, error log): the run folder is still the one
        start() checked. A link put in its place, or a folder moved in, after the run started (the logs, opened
        then, keep writing where they were) would take the writes out of the results folder: LinkRefused."""
        if self._identity is None:
            return
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            info = None
        if info is None or not stat.S_ISDIR(info.st_mode) or (info.st_dev, info.st_ino) != self._identity:
            raise LinkRefused(
                f"{self.path}: the run folder was replaced after the run started (by a link or another "
                "folder); nothing more is written there"
            )

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.check_folder()
        write_atomic(self.path / SUMMARY, json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")

    def write_error(self, text: str) -> None:
        self.check_folder()
        write_atomic(self.path / ERROR_LOG, text)

    # reading -------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        data = _parse(self.path / CONFIG, parse_yaml)
        if not isinstance(data, dict) or "run" not in data:
            raise CorruptFile(f"{self.path / CONFIG}: not a run config (no `run:` key)")
        return data

    def summary(self) -> dict[str, Any] | None:
        p = self.path / SUMMARY
        if not p.is_file():
            return None
        data = _parse(p, parse_json)
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise CorruptFile(f"{p}: not a run summary (no status)")
        return data

    def _read(self, name: str) -> list[dict[str, Any]]:
        if name in self._files:
            self._files[name].flush()
        p = self.path / name
        if not p.is_file():
            return []
        records = []
        for i, line in enumerate(_text(p).splitlines(), 1):
            if line.strip():
                try:
                    record = parse_json(line)
                except json.JSONDecodeError as e:
                    raise CorruptFile(f"{p}:{i}: not a JSON record ({e.msg}); the file was cut or edited") from None
                if not isinstance(record, dict):
                    raise CorruptFile(f"{p}:{i}: not a JSON object")
                records.append(record)
        return records

    def metrics(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self._read(METRICS) if event is None or r.get("event") == event]

    def timings(self) -> list[dict[str, Any]]:
        return self._read(TIMING)

    def probes(self) -> list[dict[str, Any]]:
        return self._read(PROBES)


class NullRunDir(RunDir):
    """What the processes other than rank 0 write to: nothing."""

    writes = False

    def start(self, resolved_config: dict[str, Any], fresh: bool = True) -> None:
        pass

    def _write(self, name: str, record: dict[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def offsets(self) -> dict[str, int]:
        return {}

    def check_offsets(self, offsets: dict[str, int]) -> None:
        pass

    def truncate(self, offsets: dict[str, int]) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_error(self, text: str) -> None:
        pass


def parse_json(text: str) -> Any:
    """json.loads, where nesting past Python's recursion limit ('[' x 100,000) is bad JSON like any other."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:100], 0) from None


def parse_yaml(text: str) -> Any:
    """yaml.safe_load, where nesting past Python's recursion limit is bad YAML like any other."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _text(path: Path) -> str:
    try:
        return read_regular(path, follow=False)
    except UnicodeDecodeError:
        raise CorruptFile(f"{path}: not UTF-8 text; the file is damaged") from None


def _parse(path: Path, parse: Any) -> Any:
    try:
        return parse(_text(path))
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise CorruptFile(f"{path}: does not parse ({str(e).splitlines()[0]})") from None


def read_experiment_meta(experiment_dir: Path) -> dict[str, Any]:
    """experiment.yaml, checked to be what `bnexp run` writes."""
    p = experiment_dir / EXPERIMENT_FILE
    data = _parse(p, parse_yaml)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or "name" not in data["config"]:
        raise CorruptFile(f"{p}: not an experiment record (no config.name)")
    return data


def experiment_runs(experiment_dir: str | Path) -> list[RunDir]:
    """The run directories of one experiment, in name order."""
    return [RunDir(p) for p in sorted(Path(experiment_dir).iterdir()) if (p / CONFIG).is_file()]
