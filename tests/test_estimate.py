"""The dry run's cost model: calibration on this machine's cores."""

from __future__ import annotations

from bnexp import estimate
from bnexp.config import expand_grid, load_config
from bnexp.estimate import calibrate

from .conftest import TINY_CONFIG


def test_calibration_trains_the_model_on_the_resized_images_the_run_will_see(tmp_path):
    """A model is built for what it will see: the 224-pixel AlexNet of alexnet_cifar100 was built for CIFAR's 32
    pixels and then fed 224, and its dry run failed."""
    path = tmp_path / "resized.yaml"
    path.write_text(TINY_CONFIG.replace("  verify_checksums: false", "  verify_checksums: false\n  resize: 40"))
    plans = expand_grid(load_config(path, ["models=[{name: lenet5, norm: batchnorm}]"]))
    assert plans[0].experiment.dataset.resize == 40
    assert calibrate(plans[0], threads=1) > 0


def test_calibration_costs_no_more_than_the_run_it_estimates(tmp_path, monkeypatch):
    """A run of 2 steps is calibrated with 2 timed steps (after the 2 that allocate), not 8, and its evaluation
    with as many images as it evaluates (30 here), not a 1000-image batch: AlexNet's smoke dry run took 24 s."""
    path = tmp_path / "short.yaml"
    path.write_text(TINY_CONFIG.replace("epochs: 2", "steps: 2\nepochs: null\neval_every: 2").replace(
        "  verify_checksums: false", "  verify_checksums: false\n  test_subset: 30"))
    plan = expand_grid(load_config(path, ["models=[{name: lenet5, norm: batchnorm}]"]))[0]
    batches: list[int] = []
    real_build = estimate.build_model

    def recording_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(lambda _m, inputs: batches.append(len(inputs[0])))
        return model

    monkeypatch.setattr(estimate, "build_model", recording_build)
    assert calibrate(plan, threads=1) > 0
    assert batches == [32] * 4 + [30]
