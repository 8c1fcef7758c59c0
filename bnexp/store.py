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

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

EXPERIMENT_FILE = "experiment.yaml"
CONFIG, SUMMARY, ERROR_LOG, CHECKPOINT = "config.yaml", "summary.json", "error.log", "checkpoint.pt"
METRICS, TIMING, PROBES = "metrics.jsonl", "timing.jsonl", "probes.jsonl"
LOGS = (METRICS, TIMING, PROBES)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """A temp file in the same folder, fsynced and renamed over `path` on success: readers see the old file
    or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save, atomically."""
    import torch  # late: reading a run store needs no torch

    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class RunDir:
    """Writer and reader of one run's directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._files: dict[str, IO[str]] = {}

    @property
    def name(self) -> str:
        return self.path.name

    def start(self, resolved_config: dict[str, Any], fresh: bool = True) -> None:
        """Create the directory and write the resolved config; `fresh` empties the logs (else they are
        appended to, after a checkpoint's `truncate`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / CONFIG, dump_yaml(resolved_config))
        for name in (ERROR_LOG, SUMMARY):
            (self.path / name).unlink(missing_ok=True)
        if fresh:
            for name in (*LOGS, CHECKPOINT):
                (self.path / name).unlink(missing_ok=True)
            for old in self.path.glob("checkpoint-step*.pt"):
                old.unlink()
        self._files = {name: (self.path / name).open("a") for name in LOGS}

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

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.path / SUMMARY, json.dumps(_finite(summary), indent=2, allow_nan=False) + "\n")

    def write_error(self, text: str) -> None:
        write_atomic(self.path / ERROR_LOG, text)

    # reading -------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / CONFIG).read_text())

    def summary(self) -> dict[str, Any] | None:
        p = self.path / SUMMARY
        return json.loads(p.read_text()) if p.is_file() else None

    def _read(self, name: str) -> list[dict[str, Any]]:
        if name in self._files:
            self._files[name].flush()
        p = self.path / name
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []

    def metrics(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self._read(METRICS) if event is None or r.get("event") == event]

    def timings(self) -> list[dict[str, Any]]:
        return self._read(TIMING)

    def probes(self) -> list[dict[str, Any]]:
        return self._read(PROBES)


def experiment_runs(experiment_dir: str | Path) -> list[RunDir]:
    """The run directories of one experiment, in name order."""
    return [RunDir(p) for p in sorted(Path(experiment_dir).iterdir()) if (p / CONFIG).is_file()]
