"""Reading results back: what happened to a run, curve quantities, and which runs are grouped together."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from bnexp.records import EvalModeRow, EvalModes, StepCost, TrainRecord
from bnexp.results import curve_quantities, find_experiments, per_step, training_course, windowed
from bnexp.store import RunDir

from .rundata import write_experiment

LN10 = math.log(10)


def records(losses, every=5):
    return [TrainRecord(step=(i + 1) * every, loss=v, steps=every, epoch=0) for i, v in enumerate(losses)]


@pytest.mark.parametrize(
    ("losses", "diverged", "outcome", "left"),
    [
        ([2.31, 2.30, 2.29, 2.30], False, "never_left_chance", None),
        ([2.3, 1.5, 0.8, 0.5], False, "trained", 10),
        ([2.3, 1.5, 2.30, 2.31], False, "fell_back", 10),  # the author's lr 0.5 run: trained, then died
        ([2.3, 1.5, None], True, "diverged", 10),
        ([2.3, 2.25, 2.2, 1.9], False, "trained", 20),  # 0.9 ln 10 = 2.07: a slow start is not "not training"
    ],
)
def test_training_course(losses, diverged, outcome, left):
    course = training_course(records(losses), 10, diverged)
    assert course.outcome == outcome and course.left_chance_step == left
    assert course.not_training == (outcome == "never_left_chance")


def test_the_bn_paper_mlp_without_bn_is_stalled_not_untrained():
    """At chance for 20,000 steps, then learning: it left chance, so it is not flagged 'not training'."""
    losses = [2.30] * 400 + [1.9, 1.2, 0.6]
    course = training_course(records(losses, every=50), 10, False)
    assert course.outcome == "trained" and course.left_chance_step == 401 * 50


def test_per_step_and_windows_treat_logged_means_and_per_step_series_alike():
    train = [
        TrainRecord(step=5, steps=5, epoch=0, loss=2.0),
        TrainRecord(step=8, steps=3, epoch=0, loss=1.0),
        TrainRecord(step=13, steps=5, epoch=0, loss=0.5),
    ]
    assert per_step(train) == [2.0] * 5 + [1.0] * 3 + [0.5] * 5
    assert windowed([1.0] * 40 + [0.0] * 10, 20) == [(20, 1.0), (40, 1.0)]


def test_curve_quantities():
    series = [2.3] * 100 + [1.5] * 100 + [0.8] * 100 + [0.4] * 118
    q = curve_quantities(series, steps_per_epoch=118)
    assert q["steps_to_loss_below_2"] == 120 and q["steps_to_loss_below_1"] == 220
    assert q["steps_to_loss_below_0.5"] == 320 and q["final_loss"] == pytest.approx(0.4)
    assert q["outcome"] == "trained"
    fell = curve_quantities([2.3] * 40 + [1.8] * 40 + [2.3] * 200, steps_per_epoch=118)
    assert fell["outcome"] == "fell_back" and fell["steps_to_loss_below_1"] is None


def test_only_runs_of_the_current_plan_with_matching_settings_are_grouped(tmp_path):
    """Issue 15, item 10: a run made with other settings, or no longer in the plan, is left out and named."""

    from bnexp.config import expand_grid
    from bnexp.store import EXPERIMENT_FILE, dump_yaml, write_atomic
    from bnexp.validate import load

    from .conftest import TINY_CONFIG

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(TINY_CONFIG)
    cfg = load(cfg_path, ["seeds=[0, 1]"])
    exp_dir = tmp_path / "results" / "tiny"
    plans = expand_grid(cfg)
    record = {"config": cfg.model_dump(), "runs": [p.name for p in plans]}
    write_atomic(exp_dir / EXPERIMENT_FILE, dump_yaml(record))
    for plan in plans:
        run = RunDir(exp_dir / plan.name)
        resolved = plan.resolved()
        if plan.name == "lenet5_lr1x_s1":
            resolved["lr"] = 0.05  # recorded with another learning rate
        run.start(resolved)
        run.log({"event": "train", "step": 1, "steps": 1, "epoch": 1.0, "loss": 1.0})  # a completed run has its log
        run.log({"event": "eval", "step": 1, "epoch": 1.0, "test_loss": 1.0, "test_acc": 0.5})
        run.close()
        run.write_summary({"run": plan.name, "status": "completed", "final_test_acc": 0.5})
    old = RunDir(exp_dir / "lenet5_lr1x_s7")  # a seed no longer in the config
    old.start({"run": "lenet5_lr1x_s7", "lr": 0.003})
    old.close()
    exp = find_experiments(exp_dir)[0]
    assert [r.name for r in exp.variants["lenet5_lr1x"]] == ["lenet5_lr1x_s0"]
    assert any(x.startswith("lenet5_lr1x_s1: recorded with other settings (lr: 0.05 -> 0.003") for x in exp.left_out)
    assert any(x.startswith("lenet5_lr1x_s7: not in the experiment's current plan") for x in exp.left_out)
    # looks or claims a record may hold beyond today's rules change no run: the settings are still compared
    record["config"] |= {"interim_looks": list(range(1, 9)), "claims": [{"id": "x", "claim": "a\nb"}]}
    write_atomic(exp_dir / EXPERIMENT_FILE, dump_yaml(record))
    exp = find_experiments(exp_dir)[0]
    assert any(x.startswith("lenet5_lr1x_s1: recorded with other settings") for x in exp.left_out)


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("summary.json", "{garbage"),
        ("config.yaml", ": : :\n  - ["),
        ("metrics.jsonl", '{"event": "eval", "step": 1}\n{"event": "tra'),
        ("summary.json", '"a string"'),
    ],
)
def test_a_damaged_run_is_left_out_with_a_warning(tmp_path, file, content):
    """Issue 15, item 7: one bad file never stops list, report or plot."""
    exp_dir = write_experiment(tmp_path)
    (exp_dir / "lenet5_lr1x_s0" / file).write_text(content)
    warnings = []
    exp = find_experiments(tmp_path, warn=warnings.append)[0]
    assert "lenet5_lr1x_s0" not in [r.name for r in exp.runs] and len(exp.runs) == 7
    assert len(warnings) == 1 and file in warnings[0] and "--restart-run lenet5_lr1x_s0" in warnings[0]


def test_a_damaged_experiment_record_is_skipped(tmp_path):
    write_experiment(tmp_path, "good")
    bad = write_experiment(tmp_path, "bad")
    (bad / "experiment.yaml").write_text("- not: [a mapping")
    warnings = []
    assert [e.name for e in find_experiments(tmp_path, warn=warnings.append)] == ["good"]
    assert "experiment.yaml" in warnings[0]


def test_analyses_are_read_with_the_run(tmp_path):
    exp_dir = write_experiment(tmp_path)
    folder = exp_dir / "lenet5-bn_lr1x_s0" / "analyses"
    folder.mkdir()
    (folder / "eval_modes.json").write_text(json.dumps({"result": {"rows": []}}))
    run = next(r for r in find_experiments(tmp_path)[0].runs if r.name == "lenet5-bn_lr1x_s0")
    result = run.analysis(EvalModes)
    assert isinstance(result, EvalModes) and result.rows == [] and result.population_gap == []
    assert run.analysis(StepCost) is None  # none recorded
    with pytest.raises(KeyError, match="EvalModeRow"):
        run.analysis(EvalModeRow)  # a model of no analysis is no "none recorded"
    assert yaml.safe_load((exp_dir / "experiment.yaml").read_text())["runs"]


def test_an_interrupted_runs_accuracies_are_not_pooled(tmp_path):
    from bnexp.results import load_run
    from bnexp.store import RunDir

    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    (run.path / "config.yaml").write_text("run: r\nseed: 0\nmodel: {name: lenet5, norm: none}\n")
    (run.path / "metrics.jsonl").write_text("")
    run.write_summary({"run": "r", "status": "interrupted", "final_test_acc": 0.5, "best_test_acc": 0.6})
    loaded = load_run(run)
    assert loaded.status == "interrupted" and loaded.summary.final_test_acc is None


def test_a_diverged_run_is_diverged_even_where_its_summary_records_no_step(tmp_path):
    """The schema allows diverged_at_step to be null; claims, report and figures all read the outcome from
    Run.course, so the status alone must make it diverged there."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    run = next(r for r in exp.runs if r.status == "diverged")
    run.summary.diverged_at_step = None
    assert run.course.outcome == "diverged" and not run.course.not_training


@pytest.mark.parametrize(
    ("status", "outcome"), [("interrupted", "interrupted"), ("failed", "unfinished"), (None, "unfinished")]
)
def test_an_unfinished_run_has_no_training_outcome(tmp_path, status, outcome):
    """Issue 38, item 5: a part of a run (interrupted, failed, or running: no summary yet) is no result, whatever
    its losses so far: its outcome says it did not finish, never trained, fell back or never left chance."""
    exp_dir = write_experiment(tmp_path)
    names = ("lenet5-bn_lr1x_s0", "lenet5_lr5x_s0")  # its losses: trained; never left chance
    for name in names:
        path = exp_dir / name / "summary.json"
        if status is None:
            path.unlink()
        else:
            path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))
    runs = {r.name: r for r in find_experiments(tmp_path)[0].runs}
    for name in names:
        assert runs[name].course.outcome == outcome and not runs[name].course.not_training, name
    losses = records([2.3, 1.5, 0.8])
    assert training_course(losses, 10, False, "interrupted").outcome == "interrupted"
    assert training_course(losses, 10, False, "completed").outcome == "trained"


@pytest.mark.parametrize("log", [None, ""])
def test_a_completed_run_without_its_training_log_is_damaged_not_an_outcome(tmp_path, capsys, log):
    """Issue 37, item 9: a missing or empty metrics.jsonl read as 'never left chance' and changed the counts."""
    exp = write_experiment(tmp_path)
    metrics = exp / "lenet5-bn_lr1x_s0" / "metrics.jsonl"
    metrics.unlink() if log is None else metrics.write_text(log)
    loaded = find_experiments(tmp_path)[0]
    assert "lenet5-bn_lr1x_s0" not in [r.name for r in loaded.runs]
    assert "lenet5-bn_lr1x_s0: damaged files" in loaded.left_out
    assert "a completed run without its training log" in capsys.readouterr().err


@pytest.mark.parametrize(
    "file", ["metrics.jsonl", "summary.json", "config.yaml", "analyses/x.json", "../experiment.yaml"]
)
def test_nesting_past_the_recursion_limit_is_a_damaged_file_not_a_crash(tmp_path, capsys, file):
    """Issue 37, item 14: '[' x 100,000 in any run file or experiment.yaml: the run (or experiment) is left out with
    a warning; list, report and plot go on."""
    from typer.testing import CliRunner

    from bnexp.cli import app

    exp = write_experiment(tmp_path / "results")
    path = exp / "lenet5-bn_lr1x_s0" / file
    path.parent.mkdir(exist_ok=True)
    path.write_text("[" * 100_000 + "\n")
    for command in ("list", "report"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "results")])
        assert "RecursionError" not in result.output and "Traceback" not in result.output
        assert result.exit_code in (0, 2), result.output
    assert "nested too deeply" in capsys.readouterr().err + result.output


@pytest.mark.parametrize("link", ["experiment", "analyses", "metrics.jsonl"])
def test_reads_never_follow_a_link_out_of_the_results_folder(tmp_path, capsys, link):
    """Issue 37, item 5: a linked experiment folder, a linked <run>/analyses and a metrics.jsonl linked to an outside
    file were read into list/report/export; the README promises no read leaves the folder."""
    import shutil

    outside = write_experiment(tmp_path / "outside", name="elsewhere")
    results = tmp_path / "results"
    exp = write_experiment(results)
    run = exp / "lenet5-bn_lr1x_s0"
    if link == "experiment":
        (results / "elsewhere").symlink_to(outside)
    elif link == "analyses":
        (outside / "lenet5-bn_lr1x_s0" / "analyses").mkdir()
        (run / "analyses").symlink_to(outside / "lenet5-bn_lr1x_s0" / "analyses")
    else:
        shutil.move(run / "metrics.jsonl", tmp_path / "outside.jsonl")
        (run / "metrics.jsonl").symlink_to(tmp_path / "outside.jsonl")
    found = find_experiments(results)
    assert [e.name for e in found] == ["synthetic"]
    if link != "experiment":
        assert "lenet5-bn_lr1x_s0" not in [r.name for r in found[0].runs]
    assert "a link" in capsys.readouterr().err


def test_a_diverged_runs_nan_activations_are_dropped_not_damage(tmp_path):
    """A net that diverged records NaN activations (null mean and sd, strict JSON): the run is a result (diverged),
    its probes from then on measure nothing; it was left out as damaged, changing outcome counts."""
    exp = write_experiment(tmp_path)
    probes = exp / "lenet5_lr5x_s1" / "probes.jsonl"  # the synthetic diverged run
    lines = probes.read_text().splitlines()
    last = json.loads(lines[-1]) | {"mean": None, "std": None}
    probes.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    loaded = find_experiments(tmp_path)[0]
    run = next(r for r in loaded.runs if r.name == "lenet5_lr5x_s1")
    assert run.status == "diverged" and len(run.probes) == len(lines) - 1
