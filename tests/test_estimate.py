"""The dry run's cost model: calibration on this machine's cores."""

from __future__ import annotations

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
