"""The dry run's cost model: calibration on this machine's cores, bounded; and the dry run's checks."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bnexp import estimate
from bnexp.cli import app
from bnexp.config import expand_grid, load_config
from bnexp.estimate import calibrate, calibrate_shapes
from bnexp.preflight import dry_run
from bnexp.progress import PlainReporter

from .conftest import TINY_CONFIG

BUDGET = 2.5  # the dry run's calibration budget (conftest shortens it for the other tests)


def test_calibration_trains_the_model_on_the_resized_images_the_run_will_see(tmp_path):
    """A model is built for what it will see: the 224-pixel AlexNet of alexnet_cifar100 was built for CIFAR's 32
    pixels and then fed 224, and its dry run failed."""
    path = tmp_path / "resized.yaml"
    path.write_text(TINY_CONFIG.replace("  verify_checksums: false", "  verify_checksums: false\n  resize: 40"))
    plans = expand_grid(load_config(path, ["models=[{name: lenet5, norm: batchnorm}]"]))
    assert plans[0].experiment.dataset.resize == 40
    assert calibrate(plans[0], threads=1) > 0


def test_calibration_costs_no_more_than_the_run_it_estimates(tmp_path, monkeypatch):
    """A run of 2 steps is calibrated with 2 timed steps (after the probe's 4 steps on 2 images and the 2 full
    steps that allocate), not 8, and its evaluation with as many images as it evaluates (30 here), not a
    1000-image batch: AlexNet's smoke dry run took 24 s."""
    path = tmp_path / "short.yaml"
    path.write_text(
        TINY_CONFIG.replace("epochs: 2", "steps: 2\nepochs: null\neval_every: 2").replace(
            "  verify_checksums: false", "  verify_checksums: false\n  test_subset: 30"
        )
    )
    plan = expand_grid(load_config(path, ["models=[{name: lenet5, norm: batchnorm}]"]))[0]
    monkeypatch.setattr(estimate, "CALIBRATION_BUDGET_S", BUDGET)  # room for full steps on a loaded machine
    batches: list[int] = []
    real_build = estimate.build_model

    def recording_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(lambda _m, inputs: batches.append(len(inputs[0])))
        return model

    monkeypatch.setattr(estimate, "build_model", recording_build)
    assert calibrate(plan, threads=1) > 0
    assert batches == [2] * 4 + [32] * 4 + [30]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_models(monkeypatch, per_image: dict[str, float], load=lambda calls: 1.0) -> list[tuple[str, int, bool]]:
    """Calibration's clock advanced by each forward pass of the models it builds: `per_image[norm]` seconds per
    image, times `load(calls so far)`; returns the passes, (norm, images, training), as they happen."""
    monkeypatch.setattr(estimate, "CALIBRATION_BUDGET_S", BUDGET)
    clock, calls = FakeClock(), []
    real_build = estimate.build_model

    def build(model_cfg, inputs):
        model = real_build(model_cfg, inputs)

        def forward(_module, args):
            calls.append((model_cfg.norm, len(args[0]), model.training))
            clock.now += per_image[model_cfg.norm] * len(args[0]) * load(len(calls))

        model.register_forward_pre_hook(forward)
        return model

    monkeypatch.setattr(estimate, "build_model", build)
    monkeypatch.setattr(estimate, "clock", clock)
    return calls


def tiny_plans(tmp_path: Path, *overrides: str) -> list:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return expand_grid(load_config(path, list(overrides)))


def test_calibration_stops_at_its_budget(tmp_path, monkeypatch):
    """Steps of 0.32 s and 0.48 s in runs of 3750 steps: each shape stops once its budget is spent (the step under
    way finishes), and its estimate is its median step plus its evaluations (2 of 10 000 images in 3750 steps)."""
    calls = slow_models(monkeypatch, {"none": 0.01, "batchnorm": 0.015})
    plans = tiny_plans(tmp_path)
    costs = calibrate_shapes(plans, 1, [torch.device("cpu")] * 2)
    for plan, cost in zip(plans, costs, strict=True):
        norm, step = plan.model.norm, {"none": 0.32, "batchnorm": 0.48}[plan.model.norm]
        trained = sum(n for m, n, training in calls if m == norm and training)
        assert trained * step / 32 <= BUDGET + step  # no step begun after the budget was spent
        assert cost.extrapolated_from is None
        assert cost.seconds == pytest.approx(step + 2 * 10_000 * step / 32 / 3750)


def test_shapes_take_turns_so_a_change_of_load_falls_on_all_alike(tmp_path, monkeypatch):
    """BN's step costs 1.5 times the plain one's; the machine gets 3 times slower halfway through. Calibrated one
    after the other, the plain net would be timed before and BN after (a ratio of 4.5, or below 1 the other way
    round); taking turns, both see the change at the same round, and their medians keep the ratio."""
    calls = slow_models(monkeypatch, {"none": 0.001, "batchnorm": 0.0015}, load=lambda n: 1.0 if n <= 18 else 3.0)
    plans = tiny_plans(tmp_path)
    plain, bn = calibrate_shapes(plans, 1, [torch.device("cpu")] * 2)
    timed = [m for m, n, training in calls if training and n == 32][4:]  # after both shapes' warm-up steps
    assert timed[:6] == ["none", "batchnorm"] * 3
    assert bn.seconds / plain.seconds == pytest.approx(1.5, rel=0.02)


@pytest.mark.parametrize(("per_image", "sub_batch"), [(1.0, 2), (0.1, 4)])
def test_a_shape_too_large_to_calibrate_is_extrapolated_from_a_sub_batch(
    tmp_path, tiny_root, monkeypatch, capsys, per_image, sub_batch
):
    """A step of 32 s (or 3.2 s) never runs at full size: its cost is extrapolated from a sub-batch, doubled from
    2 images while the budget allows (AlexNet at 224 pixels, batch 256, calibrated 20 minutes on a CPU)."""
    calls = slow_models(monkeypatch, {"batchnorm": per_image})
    plans = tiny_plans(tmp_path, "models=[{name: lenet5, norm: batchnorm}]")
    dry_run(plans[0].experiment, tmp_path / "out", PlainReporter(), data_root=tiny_root)
    out = capsys.readouterr().out
    assert max(n for _, n, _ in calls) == sub_batch
    assert re.search(
        rf"start \(~[^:]+: too large to calibrate here, ~[\d.]+ s per step, extrapolated from a batch "
        rf"of {sub_batch}\)",
        out,
    ), out
    assert "1 too large to calibrate here, extrapolated from a sub-batch" in out
    assert not (tmp_path / "out").exists()


def test_a_grid_of_100_learning_rates_calibrates_one_shape(tmp_path, tiny_root, monkeypatch, capsys):
    """The learning rate never makes a shape, also where a grid over optimizer.lr sets it. The dry run says
    what it calibrates, on the device it resolved (not "auto"), and decodes nothing into bnexp's cache."""
    path = tmp_path / "lrs.yaml"
    lrs = ", ".join(f"{i / 1000:g}" for i in range(1, 101))
    path.write_text(f"{TINY_CONFIG}grid:\n  optimizer.lr: [{lrs}]\n")
    cfg = load_config(path, ["models=[{name: lenet5, norm: none}]", "device=auto"])
    built = []
    real_build = estimate.build_model
    monkeypatch.setattr(estimate, "build_model", lambda *a: built.append(a) or real_build(*a))
    dry_run(cfg, tmp_path / "out", PlainReporter(), data_root=tiny_root)
    out = capsys.readouterr().out
    assert len(expand_grid(cfg)) == 100 and len(built) == 1
    assert "calibrating 1 run shape on cpu" in out and out.count("start (~") == 100
    assert "device cpu ->" in out and "device auto" not in out
    assert not list(Path(os.environ["BNEXP_CACHE"]).rglob("*")) and not (tmp_path / "out").exists()


def test_a_dry_run_without_the_data_exits_2_as_the_run_does_and_writes_nothing(tiny_config, tmp_path):
    """Checked first, by the run's own search (files present, not read): no calibration, nothing written."""
    (tmp_path / "empty").mkdir()
    args = ["run", str(tiny_config), "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 2, dry.output
    assert (
        f"fashion_mnist not found; looked for FashionMNIST/raw/ with the four official .gz files in {tmp_path}"
        in dry.stderr
        and "calibrat" not in dry.output
    )
    assert not (tmp_path / "out").exists() and not list(Path(os.environ["BNEXP_CACHE"]).rglob("*"))
    real = CliRunner().invoke(app, args)
    assert real.exit_code == 2 and real.stderr == dry.stderr


def test_a_dry_run_where_the_run_would_download_the_data_says_so_and_downloads_nothing(
    tiny_config, tmp_path, monkeypatch
):
    """With downloads allowed, missing files are no error: the run fetches them first; the dry run says where."""
    monkeypatch.delenv("BNEXP_OFFLINE")
    (tmp_path / "empty").mkdir()
    args = ["run", str(tiny_config), "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        f"note: fashion_mnist not found here: the run downloads it first, into {os.environ['BNEXP_CACHE']}"
        in dry.output
    )
    assert not (tmp_path / "out").exists() and not list(Path(os.environ["BNEXP_CACHE"]).rglob("*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("option", [["--device", "cuda"], ["--set", "grid.device=[cpu, cuda]"]])
def test_a_dry_run_on_a_device_that_is_not_here_exits_2(tiny_config, tiny_root, tmp_path, option):
    """--device cuda, or a grid cell's own device, where there is no GPU: exit 2 as the run, before calibrating."""
    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path / "out"), *option]
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 2, dry.output
    assert "device 'cuda' is not available on this machine" in dry.stderr and "calibrat" not in dry.output
    assert not (tmp_path / "out").exists()
