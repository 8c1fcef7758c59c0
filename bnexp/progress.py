"""Progress display: tqdm bars on a terminal, one plain line per evaluation otherwise (or with --quiet)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def duration(seconds: float) -> str:
    """45 s, 12 min, 1 h 05 min."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


class PlainReporter:
    """One line per evaluation and per finished run, flushed: readable in CI logs and files. Each finished run's
    line ends with the experiment's progress: runs done of those this command trains, and the time left at the
    pace so far, paced by training steps (a resumed run has only its remaining steps to train, and runs of one
    grid can differ a hundredfold in steps)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.steps_left: dict[str, int] = {}  # the runs still to end -> their steps left
        self.done = self.steps_trained = 0
        self.current: str | None = None
        self.started = time.monotonic()

    def message(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start_experiment(self, steps_left: dict[str, int]) -> None:
        """`steps_left`: each run this command trains -> the steps it has left to train."""
        self.steps_left = dict(steps_left)
        self.done, self.steps_trained, self.started = 0, 0, time.monotonic()

    def skip_run(self, line: str, name: str | None = None) -> None:
        """A run this command does not train: one it never counted, or `name`, found finished or taken by
        another process since the plan was made (no longer part of the progress)."""
        self.steps_left.pop(name, None)
        self.message(line)

    def _ended(self, name: str | None) -> None:
        self.done += 1
        self.steps_trained += self.steps_left.pop(name, 0)

    def run_finished(self, name: str, status: str) -> None:
        """A run that another process trained (--jobs) has ended."""
        self._ended(name)
        self.message(f"{name}: {status} {self.progress()}")

    def progress(self) -> str:
        todo = self.done + len(self.steps_left)
        if not todo:
            return ""
        eta = ""
        if self.steps_trained and self.steps_left:
            left = (time.monotonic() - self.started) / self.steps_trained * sum(self.steps_left.values())
            eta = f", about {duration(left)} left"
        return f"[experiment: {self.done}/{todo} runs{eta}]"

    def start_run(self, name: str, total_steps: int, done_steps: int = 0) -> None:
        self.current = name
        if name in self.steps_left:  # the checkpoint says where it resumes (the plan read the log)
            self.steps_left[name] = total_steps - done_steps
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

    def start_experiment(self, steps_left: dict[str, int]) -> None:
        super().start_experiment(steps_left)
        self.runs = tqdm(total=len(steps_left), desc="runs", unit="run", position=0)

    def skip_run(self, line: str, name: str | None = None) -> None:
        if name in self.steps_left and self.runs is not None:
            self.runs.total -= 1  # the bar counts, and times, only the runs this command trains
            self.runs.refresh()
        super().skip_run(line, name)

    def run_finished(self, name: str, status: str) -> None:
        if self.runs is not None:
            self.runs.update(1)
        self.message(f"{name}: {status}")

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
