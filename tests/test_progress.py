"""Issue 21, item 2: the progress lines carry the experiment's runs done / to train and the time left."""

from __future__ import annotations

import io

from bnexp import progress
from bnexp.progress import PlainReporter, duration


def test_plain_progress_counts_only_the_runs_this_command_trains(monkeypatch):
    clock = iter([0.0, 0.0, 600.0, 1200.0])  # created, experiment started, two runs ended
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.start_experiment({"b": 100, "c": 100, "d": 100, "e": 100})
    reporter.skip_run("a: skip (completed)")  # never counted
    reporter.skip_run("e: skip (completed by another process)", "e")  # taken since the plan was made
    reporter.start_run("b", 100)
    reporter.end_run("b: completed, final test_acc 0.9")  # 1 of 3 after 10 minutes: 20 minutes left
    reporter.run_finished("c", "completed")  # a --jobs worker's run: 2 of 3 after 20 minutes
    lines = out.getvalue().splitlines()
    assert lines == ["a: skip (completed)", "e: skip (completed by another process)",
                     "b: training for 100 steps",
                     "b: completed, final test_acc 0.9 [experiment: 1/3 runs, about 20 min left]",
                     "c: completed [experiment: 2/3 runs, about 10 min left]"]  # fmt: skip


def test_the_time_left_is_paced_by_steps_not_runs(monkeypatch):
    """A resumed run that had 1,000 of its 10,000 steps left ends after 1 minute: the three fresh runs of 10,000
    steps left are 30 minutes, not the 3 minutes that counting runs would say; a grid's small-batch runs
    (many steps) weigh more than its large-batch ones."""
    clock = iter([0.0, 0.0, 60.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter.start_experiment({"resumed": 3000, "b": 10_000, "c": 10_000, "d": 10_000})
    reporter.start_run("resumed", 10_000, 9000)  # its checkpoint says where it resumes
    reporter.end_run("resumed: completed")
    assert out.getvalue().splitlines()[-1] == "resumed: completed [experiment: 1/4 runs, about 30 min left]"


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (45, 90, 3600 + 5 * 60)] == ["45 s", "2 min", "1 h 05 min"]
