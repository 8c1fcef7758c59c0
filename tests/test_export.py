"""Issue 21, item 1: export round-trips through a CSV reader and TensorBoard's own reader, values equal to the run
files; damaged runs are skipped as in plot and report; a missing TensorBoard is a clear message."""

from __future__ import annotations

import builtins
import csv
import json

import pytest
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.store import RunDir

from .rundata import write_experiment


def test_csv_holds_every_logged_value_with_its_run_keys(tmp_path):
    exp = write_experiment(tmp_path / "results")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "results"), "--csv", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    run = RunDir(exp / "lenet5-bn_lr1x_s1")
    mine = [r for r in rows if r["run"] == "lenet5-bn_lr1x_s1"]
    assert {r["model"] for r in mine} == {"lenet5-bn"} and {r["seed"] for r in mine} == {"1"}
    losses = [(int(r["step"]), float(r["value"])) for r in mine if r["metric"] == "train/loss"]
    assert losses == [(r["step"], r["loss"]) for r in run.metrics("train")]
    accs = [(int(r["step"]), float(r["value"])) for r in mine if r["metric"] == "test/acc"]
    assert accs == [(r["step"], r["test_acc"]) for r in run.metrics("eval")]
    runs = {r["run"]: r for r in csv.DictReader((tmp_path / "csv" / "runs.csv").open())}
    assert float(runs["lenet5-bn_lr1x_s1"]["final_test_acc"]) == run.summary()["final_test_acc"]
    assert runs["lenet5_lr5x_s0"]["outcome"] == "never_left_chance"


def test_tensorboard_events_read_back_with_tensorboards_reader(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp = write_experiment(tmp_path / "results")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(tmp_path / "tb" / "synthetic" / "lenet5-bn_lr1x_s0"), size_guidance={"scalars": 0})
    events.Reload()
    run = RunDir(exp / "lenet5-bn_lr1x_s0")
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in loss] == [r["step"] for r in run.metrics("train")]
    assert all(v == pytest.approx(r["loss"], rel=1e-6) for (_, v), r in zip(loss, run.metrics("train"), strict=True))
    assert [e.value for e in events.Scalars("test/acc")] == pytest.approx([r["test_acc"] for r in run.metrics("eval")])
    assert "activations/layer1" in events.Tags()["histograms"]
    config = json.loads(events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode().strip("`\n"))
    assert config["seed"] == 0


def test_tensorboard_export_is_keyed_by_folder_and_replaces_its_own_files(tmp_path):
    """Issue 37, items 6 and 10: a recorded name with '/' nests no folders, two experiments recorded under one name
    stay apart, and exporting twice into one folder does not duplicate a scalar."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bnexp.store import EXPERIMENT_FILE

    for folder in ("a", "b"):
        exp = write_experiment(tmp_path / "results", name=folder)
        meta = yaml.safe_load((exp / EXPERIMENT_FILE).read_text())
        meta["config"]["name"] = "same"  # (a name with '/' is refused where experiment.yaml is read)
        (exp / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    args = ["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")]
    mine = tmp_path / "tb" / "a" / "lenet5-bn_lr1x_s0" / "events.out.tfevents.0.mine"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"")  # another program's events file: an export leaves it alone
    for _ in range(2):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["a", "b"]
    events = EventAccumulator(str(tmp_path / "tb" / "a" / "lenet5-bn_lr1x_s0"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(set(steps))  # each step once
    assert mine.is_file()


def test_export_skips_a_damaged_run_with_a_warning(tmp_path):
    exp = write_experiment(tmp_path / "results")
    (exp / "lenet5-bn_lr1x_s0" / "summary.json").write_text('{"status": "completed", "final_test_acc": "x"}')
    result = CliRunner().invoke(app, ["export", str(tmp_path / "results"), "--csv", str(tmp_path / "csv")])
    assert result.exit_code == 0 and "final_test_acc" in result.output and "Traceback" not in result.output
    assert "lenet5-bn_lr1x_s0" not in (tmp_path / "csv" / "runs.csv").read_text()


def test_without_tensorboard_the_message_says_what_to_install(tmp_path, monkeypatch):
    write_experiment(tmp_path / "results")
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "results"), "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2 and "pip install tensorboard" in result.output
    assert not (tmp_path / "tb").exists()  # a usage error writes nothing
    assert CliRunner().invoke(app, ["export", str(tmp_path / "results")]).exit_code == 2  # nothing asked


def test_runs_csv_says_an_unfinished_run_did_not_finish(tmp_path):
    """Issue 38, item 5: an interrupted run (its summary written at the stop) and a run with no summary yet are
    no 'trained' rows; the interrupted one's training time is what it trained."""
    exp = write_experiment(tmp_path / "results")
    path = exp / "lenet5-bn_lr1x_s0" / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": "interrupted"}))
    (exp / "lenet5-bn_lr1x_s1" / "summary.json").unlink()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "results"), "--csv", str(tmp_path / "csv")])
    assert result.exit_code == 0, result.output
    runs = {r["run"]: r for r in csv.DictReader((tmp_path / "csv" / "runs.csv").open())}
    assert runs["lenet5-bn_lr1x_s0"]["outcome"] == "interrupted" and runs["lenet5-bn_lr1x_s0"]["train_time_s"] == "3.0"
    assert runs["lenet5-bn_lr1x_s1"]["outcome"] == "unfinished" and runs["lenet5-bn_lr5x_s0"]["outcome"] == "trained"


def test_text_a_spreadsheet_would_run_as_a_formula_is_quoted_numbers_are_not():
    """Issue 37, item 6: a run or experiment name from someone else's folder never becomes a spreadsheet formula."""
    from bnexp.export import spreadsheet_safe

    row = ['=HYPERLINK("http://x")', "+1+2", "@SUM(A1)", "-0.5", "-1e-05", "lenet5", 3, -2.0, None]
    assert spreadsheet_safe(row) == [
        '\'=HYPERLINK("http://x")',
        "'+1+2",
        "'@SUM(A1)",
        "-0.5",
        "-1e-05",
        "lenet5",
        3,
        -2.0,
        None,
    ]
