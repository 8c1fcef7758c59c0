"""Progress display: tqdm bars on a terminal, one plain line per evaluation otherwise (or with --quiet)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from tqdm import tqdm


def duration(seconds: float) -> str:
    """45 s, 12 min, 1 h 05 min."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class RunLeft(NamedTuple):
    """What a run has left to train: steps of `batch` images (all processes' together)."""

    steps: int
    batch: int

    @property
    def images(self) -> int:
        return self.steps * self.batch


class PlainReporter:
    """One line per evaluation and per finished run, flushed: readable in CI logs and files. Each finished run's
    line ends with the experiment's progress: runs done of those this command trains, and the time left at the
    pace so far. That pace is counted per training step and per training image: a large batch's step takes
    longer than a small one's and each of its images less, so when the runs left differ in batch size from the
    runs done, the time left lies between the two counts and the line gives both (one time where they agree).
    A resumed run counts only the steps it had left."""

    def __init__(self, stream=None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stdout
        self.clock = clock  # seconds; another clock replays a finished experiment (scripts/replay_time_left.py)
        self.left: dict[str, RunLeft] = {}  # the runs still to end
        self.done = self.steps_trained = self.images_trained = 0
        self.current: str | None = None
        self.started = self.clock()

    def message(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start_experiment(self, runs: dict[str, RunLeft]) -> None:
        """`runs`: each run this command trains -> the steps it has left to train, and its batch."""
        self.left = dict(runs)
        self.done = self.steps_trained = self.images_trained = 0
        self.started = self.clock()

    def skip_run(self, line: str, name: str | None = None) -> None:
        """A run this command does not train: one it never counted, or `name`, found finished or taken by
        another process since the plan was made (no longer part of the progress)."""
        self.left.pop(name, None)
        self.message(line)

    def _ended(self, name: str | None) -> None:
        self.done += 1
        run = self.left.pop(name, None)
        if run is not None:
            self.steps_trained += run.steps
            self.images_trained += run.images

    def run_finished(self, name: str, status: str, line: str | None = None) -> None:
        """A run that another process trained (--jobs) has ended; `line`: that process's last line for it."""
        self._ended(name)
        self.message(f"{line or f'{name}: {status}'} {self.progress()}")

    def progress(self) -> str:
        todo = self.done + len(self.left)
        if not todo:
            return ""
        eta = ""
        if self.steps_trained and self.left:
            elapsed = self.clock() - self.started
            by_steps = elapsed / self.steps_trained * sum(r.steps for r in self.left.values())
            by_images = elapsed / self.images_trained * sum(r.images for r in self.left.values())
            low, high = duration(min(by_steps, by_images)), duration(max(by_steps, by_images))
            eta = f", about {low} left" if low == high else f", {low} to {high} left"
        return f"[experiment: {self.done}/{todo} runs{eta}]"

    def start_run(self, name: str, total_steps: int, done_steps: int = 0) -> None:
        self.current = name
        if name in self.left:  # the checkpoint says where it resumes (the plan read the log)
            self.left[name] = self.left[name]._replace(steps=total_steps - done_steps)
        resumed = f" (resuming at step {done_steps})" if done_steps else ""
        self.message(f"{name}: training for {total_steps} steps{resumed}")

    def advance(self, steps: int, loss: float | None) -> None:
        pass

    def evaluated(self, line: str, test_acc: float) -> None:
        self.message(line)

    def end_run(self, line: str) -> None:
        self._ended(self.current)
        self.message(f"{line} {self.progress()}".rstrip())

    def close(self) -> None:
        pass


class TqdmReporter(PlainReporter):
    """A bar over runs and a bar over the current run's steps, with loss and test accuracy."""

    def __init__(self):
        super().__init__()
        self.runs: tqdm | None = None
        self.steps: tqdm | None = None
        self.test_acc: float | None = None

    def message(self, line: str) -> None:
        tqdm.write(line)

    def start_experiment(self, runs: dict[str, RunLeft]) -> None:
        super().start_experiment(runs)
        self.runs = tqdm(total=len(runs), desc="runs", unit="run", position=0)

    def skip_run(self, line: str, name: str | None = None) -> None:
        if name in self.left and self.runs is not None:
            self.runs.total -= 1  # the bar counts, and times, only the runs this command trains
            self.runs.refresh()
        super().skip_run(line, name)

    def run_finished(self, name: str, status: str, line: str | None = None) -> None:
        if self.runs is not None:
            self.runs.update(1)
        self.message(line or f"{name}: {status}")

    def start_run(self, name: str, total_steps: int, done_steps: int = 0) -> None:
        self.test_acc = None
        self.steps = tqdm(total=total_steps, initial=done_steps, desc=name, unit="step", position=1, leave=False)

    def advance(self, steps: int, loss: float | None) -> None:
        assert self.steps is not None
        self.steps.update(steps)
        postfix = {"loss": "nan" if loss is None else f"{loss:.4f}"}
        if self.test_acc is not None:
            postfix["test_acc"] = f"{self.test_acc:.4f}"
        self.steps.set_postfix(postfix, refresh=False)

    def evaluated(self, line: str, test_acc: float) -> None:
        self.test_acc = test_acc
        self.message(line)

    def end_run(self, line: str) -> None:
        if self.steps is not None:
            self.steps.close()
        if self.runs is not None:
            self.runs.update(1)
        self.message(line)

    def close(self) -> None:
        if self.runs is not None:
            self.runs.close()


def make_reporter(quiet: bool) -> PlainReporter:
    return PlainReporter() if quiet or not sys.stdout.isatty() else TqdmReporter()
