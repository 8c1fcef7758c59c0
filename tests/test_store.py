"""Issue 19: a results folder from someone else cannot make bnexp write outside it (links), hang it (FIFOs) or
lose a user's files (temp-file clean-up)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.config import ConfigError
from bnexp.store import LinkRefused, RunDir, real_dir, remove_temp_files
from bnexp.validate import load as load_config

from .conftest import in_process
from .rundata import write_experiment


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside every results folder that must never change."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


def test_the_writability_probe_never_writes_through_a_planted_link(tiny_config, tiny_root, tmp_path, victim):
    """Item 3."""
    (tmp_path / "out" / "tiny").mkdir(parents=True)
    (tmp_path / "out" / "tiny" / ".write-test").symlink_to(victim)
    assert in_process(tiny_config, tiny_root, tmp_path / "out", ["steps=2", "epochs=null", "eval_every=2"]) == 0
    assert victim.read_text() == "precious"


def test_a_linked_log_is_never_appended_to_or_truncated(tmp_path, victim):
    """Item 4: resuming (fresh=False) opens the logs without following links."""
    run = RunDir(tmp_path / "exp" / "run")
    run.path.mkdir(parents=True)
    (run.path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(LinkRefused, match="is a link"):
        run.start({"run": "run"}, fresh=False)
    run.close()
    assert victim.read_text() == "precious"


def test_a_linked_experiment_or_run_folder_is_refused(tiny_config, tiny_root, tmp_path, victim):
    """Item 4 and item 20: a run folder that is a link is named as a link, and nothing lands behind it."""
    out = tmp_path / "out"
    (out / "tiny").mkdir(parents=True)
    (out / "tiny" / "lenet5_lr1x_s0").symlink_to(victim.parent, target_is_directory=True)
    code = in_process(tiny_config, tiny_root, out, ["steps=2", "epochs=null", "eval_every=2"])
    assert code == 1  # that run is refused, the other one trains
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
    with pytest.raises(LinkRefused, match="is a link"):
        real_dir(out, out / "tiny" / "lenet5_lr1x_s0" / "analyses")


def test_plot_replaces_a_planted_figure_link_and_refuses_a_linked_figures_folder(tmp_path, victim):
    """Item 5."""
    exp = write_experiment(tmp_path / "results")
    (exp / "figures").mkdir()
    (exp / "figures" / "convergence.png").symlink_to(victim)
    assert CliRunner().invoke(app, ["plot", str(tmp_path / "results")]).exit_code == 0
    assert victim.read_text() == "precious" and not (exp / "figures" / "convergence.png").is_symlink()
    for p in (exp / "figures").iterdir():
        p.unlink()
    (exp / "figures").rmdir()
    (exp / "figures").symlink_to(victim.parent, target_is_directory=True)
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "results")])
    assert result.exit_code == 2 and "is a link" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


@pytest.fixture
def analyzed(tiny_config, tiny_root, tmp_path):
    """A finished tiny run with final weights and a scale_invariance analysis requested."""
    out = tmp_path / "out"
    overrides = [
        "models=[{name: lenet5, norm: batchnorm}]",
        "steps=2",
        "epochs=null",
        "eval_every=2",
        "keep_final_weights=true",
        "analyses={scale_invariance: true}",
    ]
    assert in_process(tiny_config, tiny_root, out, overrides) == 0
    return out, out / "tiny" / "lenet5-bn_lr1x_s0", tiny_root


def analyze(out: Path, root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["analyze", str(out), "--force", "--data-root", str(root), "--device", "cpu"])
    return result.exit_code, result.output


def test_analyze_never_writes_through_a_linked_analyses_folder(analyzed, victim):
    """Item 6."""
    out, run, root = analyzed
    for p in (run / "analyses").iterdir():
        p.unlink()
    (run / "analyses").rmdir()
    (run / "analyses").symlink_to(victim.parent, target_is_directory=True)
    code, output = analyze(out, root)
    assert code == 1 and "is a link" in output and "Traceback" not in output
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


def test_analyze_refuses_run_names_that_leave_the_experiment(analyzed, victim):
    """Item 6: a `runs:` entry like ../../x in experiment.yaml."""
    out, _, root = analyzed
    meta = out / "tiny" / "experiment.yaml"
    meta.write_text(meta.read_text().replace("runs: [lenet5-bn_lr1x_s0]", "runs: [../../outside]"))
    code, output = analyze(out, root)
    assert code == 1 and "not a plain folder name" in output
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]


def test_analyze_names_a_weights_file_that_is_not_a_state_dict(analyzed):
    """Item 16."""
    import torch

    out, run, root = analyzed
    torch.save([torch.zeros(2)], run / "weights.pt")
    code, output = analyze(out, root)
    assert code == 1 and "not a state dict" in output and "Traceback" not in output


def test_only_bnexps_own_temp_files_are_removed(tmp_path):
    """Item 7."""
    ours = tmp_path / ".summary.json.bnexp-tmp-k2j3h4"
    users = [tmp_path / ".notes.md", tmp_path / ".summary.json.k2j3h4", tmp_path / ".lock"]
    for p in [ours, *users]:
        p.write_text("x")
    assert remove_temp_files(tmp_path) == [ours]
    assert all(p.exists() for p in users)


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _alarm(seconds: int):
    def fail(signum, frame):
        raise TimeoutError("blocked on a FIFO")

    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


@pytest.mark.parametrize("command", ["list", "plot", "report"])
def test_a_fifo_in_a_results_folder_never_blocks_a_reader(tmp_path, command):
    """Item 11: a named pipe where an analysis, a summary or a log should be."""
    exp = write_experiment(tmp_path / "results")
    _fifo(exp / "lenet5_lr1x_s0" / "analyses" / "eval_modes.json")
    (exp / "lenet5-bn_lr1x_s0" / "summary.json").unlink()
    _fifo(exp / "lenet5-bn_lr1x_s0" / "summary.json")
    _alarm(60)
    try:
        result = CliRunner().invoke(app, [command, str(tmp_path / "results")])
    finally:
        signal.alarm(0)
    assert result.exit_code == 0 and "not a regular file" in result.output


def test_a_fifo_as_a_reference_series_is_a_config_error(tmp_path):
    """Item 11: `bnexp run` reads reference series while it validates the config."""
    _fifo(tmp_path / "references" / "r.json")
    (tmp_path / "c.yaml").write_text(
        "name: c\ndataset: {name: fashion_mnist}\nmodels: [{name: lenet5, norm: none}]\noptimizer: {name: sgd, "
        "lr: 0.1}\nbatch_size: 8\nepochs: 1\nseeds: [0]\nreference:\n  source: s\n  series:\n    lenet5_lr1x: "
        "[{file: references/r.json, key: k, quantity: train_loss_per_step}]\n"
    )
    _alarm(60)
    try:
        with pytest.raises(ConfigError, match="not a regular file"):
            load_config(tmp_path / "c.yaml")
    finally:
        signal.alarm(0)


def test_a_fresh_start_removes_only_bnexps_own_kept_checkpoints(tmp_path):
    """Issue 37, item 3: --restart-run clears checkpoint-stepNNNNNNNN.pt, never a file of yours named alike."""
    run = RunDir(tmp_path / "run")
    run.start({"run": "run"})
    run.close()
    for name in ("checkpoint-step00001000.pt", "checkpoint-step-mine.pt", "checkpoint-step12.pt.bak"):
        (run.path / name).write_text("x")
    run.start({"run": "run"}, fresh=True)
    run.close()
    assert sorted(p.name for p in run.path.glob("checkpoint-step*")) == [
        "checkpoint-step-mine.pt",
        "checkpoint-step12.pt.bak",
    ]
