"""Issue 21, item 2: the progress lines carry the experiment's runs done / to train and the time left."""

from __future__ import annotations

import io

from bnexp.progress import PlainReporter, RunLeft, duration


def test_plain_progress_counts_only_the_runs_this_command_trains():
    clock = iter([0.0, 0.0, 600.0, 1200.0])  # created, experiment started, two runs ended
    out = io.StringIO()
    reporter = PlainReporter(out, clock=lambda: next(clock))
    reporter.start_experiment({name: RunLeft(100, 32) for name in "bcde"})
    reporter.skip_run("a: skip (completed)")  # never counted
    reporter.skip_run("e: skip (completed by another process)", "e")  # taken since the plan was made
    reporter.start_run("b", 100)
    reporter.end_run("b: completed, final test_acc 0.9")  # 1 of 3 after 10 minutes: 20 minutes left
    reporter.run_finished("c", "completed")  # a --jobs worker's run: 2 of 3 after 20 minutes
    lines = out.getvalue().splitlines()
    assert lines == [
        "a: skip (completed)",
        "e: skip (completed by another process)",
        "b: training for 100 steps",
        "b: completed, final test_acc 0.9 [experiment: 1/3 runs, about 20 min left]",
        "c: completed [experiment: 2/3 runs, about 10 min left]",
    ]


def test_the_time_left_is_paced_by_steps_not_runs():
    """A resumed run that had 1,000 of its 10,000 steps left ends after 1 minute: the three fresh runs of 10,000
    steps left are 30 minutes, not the 3 minutes that counting runs would say; a grid's small-batch runs
    (many steps) weigh more than its large-batch ones (see the next test)."""
    clock = iter([0.0, 0.0, 60.0])
    out = io.StringIO()
    reporter = PlainReporter(out, clock=lambda: next(clock))
    reporter.start_experiment({"resumed": RunLeft(3000, 32), **{name: RunLeft(10_000, 32) for name in "bcd"}})
    reporter.start_run("resumed", 10_000, 9000)  # its checkpoint says where it resumes
    reporter.end_run("resumed: completed")
    assert out.getvalue().splitlines()[-1] == "resumed: completed [experiment: 1/4 runs, about 30 min left]"


def test_where_the_runs_left_have_other_batches_the_time_left_is_a_range():
    """Two runs at batch 2 (900 steps, 1,800 images each) took 10 minutes; the two left are at batch 128, 15
    steps and 1,920 images each: at the step pace 10 s, at the image pace 11 min. A larger batch's step costs
    more and each of its images less, so the truth lies between and the line gives both."""
    clock = iter([0.0, 0.0, 300.0, 600.0])
    out = io.StringIO()
    reporter = PlainReporter(out, clock=lambda: next(clock))
    reporter.start_experiment(
        {"b2_s0": RunLeft(900, 2), "b2_s1": RunLeft(900, 2), "b128_s0": RunLeft(15, 128), "b128_s1": RunLeft(15, 128)}
    )
    reporter.run_finished("b2_s0", "completed")
    reporter.run_finished("b2_s1", "completed")
    assert out.getvalue().splitlines() == [
        "b2_s0: completed [experiment: 1/4 runs, 5 min to 16 min left]",
        "b2_s1: completed [experiment: 2/4 runs, 10 s to 11 min left]",
    ]


def test_runs_of_one_batch_give_one_time_left():
    clock = iter([0.0, 0.0, 120.0])
    out = io.StringIO()
    reporter = PlainReporter(out, clock=lambda: next(clock))
    reporter.start_experiment({"a": RunLeft(500, 64), "b": RunLeft(1000, 64)})
    reporter.run_finished("a", "completed")
    assert out.getvalue() == "a: completed [experiment: 1/2 runs, about 4 min left]\n"


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (45, 90, 3600 + 5 * 60)] == ["45 s", "2 min", "1 h 05 min"]
