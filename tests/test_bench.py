"""The benchmark's code path runs (a smoke check, not a timing: benchmarks are never timed in tests)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from bnexp.bench import CPU, HostSyncCounter, experiment, trainer_timings
from bnexp.cli import app
from bnexp.config import DatasetConfig, ModelConfig, RunPlan
from bnexp.data import load_data
from bnexp.models import build_model
from bnexp.train import evaluate

from .conftest import write_tiny_dataset


def test_bench_runs_every_section(tmp_path, monkeypatch):
    """On small generated files (the real ones only make it slower; bnexp's data tests check those). torch.compile
    is the identity here: its C++ builds take a minute on a fresh machine, and that compiled training follows
    eager training is test_train's; what runs here is the benchmark's own code, every row of it."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    root = write_tiny_dataset(tmp_path, n_train=1200, n_test=600)
    write_tiny_dataset(tmp_path, folder="MNIST", n_train=1200, n_test=600)
    args = ["--reps", "1", "--steps", "10", "--no-time-to-accuracy", "--no-verify-checksums", "--batch-sizes", "64"]
    result = CliRunner().invoke(app, ["bench", "--data-root", str(root), *args])
    assert result.exit_code == 0, result.output
    for section in (
        "1 articles' loop",
        "2 bnexp trainer",
        "3 bare loop",
        "ratio bnexp / articles' loop",
        "bnexp evaluate, batch 5000",
        "input pipeline alone",
        "alexnet_small-bn",
        "mlp-bn",
        "--jobs 2",
        "loss_window.py:",  # the training loop's host sync, named by its file (bnexp/training/)
        "| precision: bf16 | 64 |",
        "| compile: true | 64 |",
        "channels_last",
        "batch 500, compile",
    ):
        assert section in result.stdout, section


def test_bench_checks_the_files_unless_told_not_to(tmp_path):
    root = write_tiny_dataset(tmp_path)
    result = CliRunner().invoke(app, ["bench", "--data-root", str(root), "--reps", "1", "--steps", "10"])
    assert result.exit_code == 2 and "verify_checksums" in result.stderr


def test_bench_rejects_an_unknown_device_and_bad_batch_sizes():
    result = CliRunner().invoke(app, ["bench", "--device", "tpu"])
    assert result.exit_code == 2 and "unknown device 'tpu'" in result.stderr
    for bad in ("64,x", "1", ""):
        result = CliRunner().invoke(app, ["bench", "--batch-sizes", bad])
        assert result.exit_code == 2 and "--batch-sizes" in result.stderr and "e.g. 64,256" in result.stderr


def test_host_sync_counter_counts_bnexp_call_sites_only(tiny_root):
    data = load_data(data_config(), CPU, tiny_root)
    model = build_model(ModelConfig(name="lenet5"), data.inputs)
    with HostSyncCounter() as counter:
        for _ in range(3):
            evaluate(model, data, data.test, 64)  # one tolist() at its end
        torch.ones(2).sum().item()  # not bnexp's code
    assert list(counter.sites.values()) == [3]
    assert next(iter(counter.sites)).startswith("evaluate.py:") and next(iter(counter.sites)).endswith(" tolist")


def test_training_loop_syncs_per_log_window_not_per_step(tiny_root):
    """Host syncs in bnexp's loop come from log windows, evaluations and checkpoints, never from steps:
    doubling the steps between them must not add one."""
    data = load_data(data_config(), CPU, tiny_root)
    model = ModelConfig(name="lenet5", norm="batchnorm")
    sites = []
    for steps in (15, 30):
        plan = RunPlan("syncs", model, 1.0, 0, experiment(model, data_config(), 16, steps, log_every=steps))
        with HostSyncCounter() as counter:
            trainer_timings(plan, data, CPU)
        sites.append(counter.sites)
    assert sites[0] == sites[1] and 0 < sum(sites[0].values()) <= 4, sites


def data_config() -> DatasetConfig:
    return DatasetConfig(name="fashion_mnist", verify_checksums=False)
