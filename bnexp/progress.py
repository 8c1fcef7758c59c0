"""Progress display: tqdm bars on a terminal, one plain line per evaluation otherwise (or with --quiet)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class PlainReporter:
    """One line per evaluation and per finished run, flushed: readable in CI logs and files."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def message(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start_experiment(self, total_runs: int) -> None:
        pass

    def start_run(self, name: str, total_steps: int, done_steps: int = 0) -> None:
        resumed = f" (resuming at step {done_steps})" if done_steps else ""
        self.message(f"{name}: training for {total_steps} steps{resumed}")

    def advance(self, steps: int, loss: float | None) -> None:
        pass

    def evaluated(self, line: str, test_acc: float) -> None:
        self.message(line)

    def end_run(self, line: str) -> None:
        self.message(line)

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

    def start_experiment(self, total_runs: int) -> None:
        self.runs = tqdm(total=total_runs, desc="runs", unit="run", position=0)

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
