"""Post-training analyses on a tiny trained model: every evaluation mode, scale invariance, skip when done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bnexp.analyses import eval_modes, step_cost
from bnexp.cli import app
from bnexp.config import DatasetConfig, EvalModesConfig, ModelConfig
from bnexp.data import load_data
from bnexp.models import build_model
from bnexp.nn import BatchNorm
from bnexp.progress import PlainReporter
from bnexp.records import read_analysis
from bnexp.runner import run_experiment
from bnexp.store import CorruptFile
from bnexp.validate import load

from .conftest import TINY_CONFIG

ANALYSED = (
    TINY_CONFIG.replace("epochs: 2", "epochs: 3")
    + """\
keep_final_weights: true
analyses:
  eval_modes: {batch_sizes: [2, 50], group_size: 10, groups: 4, reestimate_batches: [1, 5]}
  scale_invariance: true
"""
)


@pytest.fixture
def trained(tiny_root, tmp_path):
    config = tmp_path / "a.yaml"
    config.write_text(ANALYSED)
    cfg = load(config, ["models=[{name: lenet5, norm: batchnorm}, {name: lenet5, norm: groupnorm, groups: 2}]"])
    assert run_experiment(cfg, tmp_path / "out", PlainReporter(), tiny_root) == 0
    return tmp_path / "out" / "tiny", tiny_root


def result(exp_dir, run, name):
    return json.loads((exp_dir / run / "analyses" / f"{name}.json").read_text())


def test_every_evaluation_mode_on_a_trained_model(trained):
    exp_dir, _ = trained
    rows = {
        (r["mode"], r.get("batch_size"), r.get("batches")): r["test_acc"]
        for r in result(exp_dir, "lenet5-bn_lr1x_s0", "eval_modes")["result"]["rows"]
    }
    # the tiny dataset is too easy for the accuracy shapes (the real run shows them); here: every mode ran
    assert set(rows) == {
        ("a_eval", None, None),
        ("b_batch_stats_shuffled", 2, None),
        ("b_batch_stats_shuffled", 50, None),
        ("c_batch_stats_homogeneous", 10, None),
        ("c_eval_homogeneous", 10, None),
        ("c_batch_stats_near_duplicates", 10, None),
        ("c_eval_near_duplicates", 10, None),
        ("d_lost_running_stats", None, None),
        ("e_reestimated", 32, 1),
        ("e_reestimated", 32, 5),
    }
    assert rows[("a_eval", None, None)] > 0.5 and all(0 <= v <= 1 for v in rows.values())
    gaps = result(exp_dir, "lenet5-bn_lr1x_s0", "eval_modes")["result"]["population_gap"]
    assert len(gaps) == 4 and all(g["mean_gap"] >= 0 for g in gaps)
    gn = result(exp_dir, "lenet5-gn_lr1x_s0", "eval_modes")["result"]
    assert not gn["has_running_stats"] and {r["mode"] for r in gn["rows"]} == {
        "a_eval",
        "b_batch_stats_shuffled",
        "c_batch_stats_homogeneous",
        "c_eval_homogeneous",
        "c_batch_stats_near_duplicates",
        "c_eval_near_duplicates",
    }
    same = {r["mode"]: r["test_acc"] for r in gn["rows"] if r["mode"].startswith("c_")}
    assert same["c_batch_stats_homogeneous"] == same["c_eval_homogeneous"]  # GroupNorm has no batch statistics


def test_modes_by_hand(tiny_root):
    """Batch statistics leave the running statistics alone; losing them resets to (0, 1); re-estimation with
    momentum None is the plain average of the batches' statistics."""
    data = load_data(DatasetConfig(name="fashion_mnist", verify_checksums=False), torch.device("cpu"), tiny_root)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 8), BatchNorm(8), torch.nn.ReLU(), torch.nn.Linear(8, 10)
    ).eval()
    before = model[2].running_mean.clone()
    batches = eval_modes.shuffled_batches(data.test, 10, torch.Generator().manual_seed(0))
    eval_modes.accuracy_on_batches(model, data, batches, batch_stats=True)
    assert torch.equal(model[2].running_mean, before) and not model.training
    eval_modes.lose_running_stats(model)
    assert model[2].running_mean.abs().sum() == 0 and (model[2].running_var == 1).all()
    eval_modes.reestimate(model, data, 3, 20, torch.Generator().manual_seed(0))
    assert model[2].momentum == 0.1 and int(model[2].num_batches_tracked) == 3
    near = eval_modes.near_duplicate_batches(data.test, EvalModesConfig(groups=2, group_size=4), torch.Generator())
    assert len(near) == 2 and near[0][0].shape == (4, 1, 28, 28) and len(set(near[0][1].tolist())) == 1
    homog = eval_modes.homogeneous_batches(data.test, EvalModesConfig(groups=3, group_size=5), torch.Generator())
    assert [set(labels.tolist()) for _, labels in homog] == [{0}, {1}, {2}]


def test_scale_invariance_analysis(trained):
    exp_dir, _ = trained
    r = result(exp_dir, "lenet5-bn_lr1x_s0", "scale_invariance")["result"]
    assert r["has_batchnorm"] and len(r["layers"]) == 4
    for layer in r["layers"]:
        at = {row["a"]: row for row in layer["without_eps_float64"]}
        assert all(
            row["output_rel_error"] < 1e-10 and row["grad_ratio"] == pytest.approx(1, abs=1e-9) for row in at.values()
        )
        with_eps = {row["a"]: row for row in layer["with_eps"]}
        assert with_eps[1.0]["output_rel_error"] == 0.0 and with_eps[1000.0]["output_rel_error"] < 1e-4
    assert not result(exp_dir, "lenet5-gn_lr1x_s0", "scale_invariance")["result"]["has_batchnorm"]


def test_analyze_skips_what_is_done_and_redoes_with_force(trained):
    exp_dir, root = trained
    first = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root)])
    assert first.exit_code == 0 and first.output.count("already done") == 4
    again = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root), "--force"])
    assert again.exit_code == 0 and again.output.count("eval_modes ->") == 2
    (exp_dir / "lenet5-bn_lr1x_s0" / "weights.pt").unlink()
    # committed results keep analyses but no weights: what is recorded stands, and nothing fails
    kept = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root)])
    assert kept.exit_code == 0 and kept.output.count("(its weights are not kept here)") == 2
    missing = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root), "--force"])
    assert missing.exit_code == 1 and "weights.pt is missing" in missing.output
    assert "--restart-run lenet5-bn_lr1x_s0" in missing.output
    (exp_dir / "lenet5-bn_lr1x_s0" / "analyses" / "eval_modes.json").unlink()  # a record to make, without weights
    lost = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root)])
    assert lost.exit_code == 1 and "weights.pt is missing" in lost.output


def test_crafted_weights_never_run_code(trained, tmp_path):
    """Issue 15, item 2: weights.pt from someone else's results folder is loaded with weights_only=True."""
    exp_dir, root = trained
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Payload()}, exp_dir / "lenet5-bn_lr1x_s0" / "weights.pt")
    out = CliRunner().invoke(app, ["analyze", str(exp_dir), "--data-root", str(root), "--force"])
    assert out.exit_code == 1 and not marker.exists() and "not a plain tensor file" in out.output


def test_step_cost_times_a_copy_against_the_bn_twin_and_restores_the_threads(tiny_root):
    data = load_data(DatasetConfig(name="fashion_mnist", verify_checksums=False), torch.device("cpu"), tiny_root)
    run = {"model": {"name": "lenet5", "norm": "decorrelated_batchnorm"}, "batch_size": 8}
    model = build_model(ModelConfig(name="lenet5", norm="decorrelated_batchnorm"), data.inputs).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    r = step_cost.analyze(model, data, run)
    assert torch.get_num_threads() == threads and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the timed steps ran on a copy
    assert r["norm"] == "decorrelated_batchnorm" and len(r["ratios"]) == step_cost.REPS
    assert all(x > 0 for x in r["ratios"]) and r["ratio_to_batchnorm"] == sorted(r["ratios"])[step_cost.REPS // 2]
    assert set(r["ms_per_step"]) == {"this", "batchnorm"} and r["torch_threads"] == 1
    assert read_analysis(Path("step_cost.json"), "step_cost", {"result": r}).ratios == r["ratios"]  # as read
    with pytest.raises(CorruptFile, match="ratio_to_batchnorm"):
        read_analysis(Path("step_cost.json"), "step_cost", {"result": {**r, "ratio_to_batchnorm": "fast"}})


@pytest.mark.parametrize("model", ["lenet5:decorrelated_batchnorm", "lenet5:l1_batchnorm", "lstm:batchnorm"])
def test_every_evaluation_mode_runs_on_the_other_batch_norms(tiny_root, model):
    """Whitening keeps covariances and lp-BN squared lp scales: both lose and re-estimate their running
    statistics like BN, and neither is compared with a population variance it does not estimate."""
    name, norm = model.split(":")
    data = load_data(DatasetConfig(name="fashion_mnist", verify_checksums=False), torch.device("cpu"), tiny_root)
    net = build_model(ModelConfig(name=name, norm=norm), data.inputs)
    settings = EvalModesConfig(batch_sizes=[8], group_size=4, groups=2, reestimate_batches=[2])
    r = eval_modes.analyze(net, data, settings, 16, 0)
    assert r["has_running_stats"] and {row["mode"] for row in r["rows"]} >= {"a_eval", "d_lost_running_stats"}
    per_step_bns = 3 * data.inputs.height  # recurrent BN: three norms, each with one BatchNorm per step
    assert len(r["population_gap"]) == {"lstm:batchnorm": per_step_bns}.get(model, 0)


def test_analyses_of_a_grid_over_dataset_keys_use_each_runs_own_data(tiny_root, tmp_path):
    """Issue 37, item 7: every run was analysed on the first cell's data (an MNIST run evaluated on Fashion-MNIST).
    Eval mode with running statistics on the run's own test set is its final evaluation, to the digit."""
    config = tmp_path / "a.yaml"
    config.write_text(ANALYSED)
    cfg = load(
        config,
        [
            "models=[{name: lenet5, norm: batchnorm}]",
            "grid={dataset.normalize: [unit, standardize]}",
            "analyses={eval_modes: {batch_sizes: [50], group_size: 10, groups: 4, reestimate_batches: [1]}}",
        ],
    )
    assert run_experiment(cfg, tmp_path / "out", PlainReporter(), tiny_root) == 0
    exp_dir = tmp_path / "out" / "tiny"
    for run in ("lenet5-bn_normalizeunit_lr1x_s0", "lenet5-bn_normalizestandardize_lr1x_s0"):
        final = json.loads((exp_dir / run / "summary.json").read_text())["final_test_acc"]
        rows = result(exp_dir, run, "eval_modes")["result"]["rows"]
        assert next(r["test_acc"] for r in rows if r["mode"] == "a_eval") == pytest.approx(final, abs=1e-9), run
