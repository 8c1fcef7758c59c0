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
    reporter.start_experiment(4)
    reporter.skip_run("a: skip (completed)")
    reporter.end_run("b: completed, final test_acc 0.9")  # 1 of 3 after 10 minutes: 20 minutes left
    reporter.run_finished("c", "completed")  # a --jobs worker's run: 2 of 3 after 20 minutes
    lines = out.getvalue().splitlines()
    assert lines == ["a: skip (completed)",
                     "b: completed, final test_acc 0.9 [experiment: 1/3 runs, about 20 min left]",
                     "c: completed [experiment: 2/3 runs, about 10 min left]"]  # fmt: skip


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (45, 90, 3600 + 5 * 60)] == ["45 s", "2 min", "1 h 05 min"]
