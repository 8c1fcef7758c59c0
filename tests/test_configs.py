"""Every shipped config runs end to end at smoke size (its own `smoke:` profile, the same code path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.store import experiment_runs
from bnexp.validate import load as load_config

from .conftest import REPO, SHARED_DATA, write_tiny_cifar100, write_tiny_dataset

CONFIGS = sorted((REPO / "configs").glob("*.yaml"), key=lambda p: p.name)
# the figure each experiment exists for, drawn from its own smoke results
FIGURE_OF = {
    "smoothness": {"landscape", "ics"},
    "noisy_bn": {"distribution_drift"},
    "batch_size": {"batch_size"},
    "scale_invariance": {"scale_invariance"},
    "eval_mode": {"eval_modes"},
    "bn_distributed": {"data_parallel"},
    "learning_rate": {"learning_rate"},
    "feature_distribution": {"feature_distribution"},
    "init_scale": {"init_scale"},
    "other_norms": {"landscape"},
    "whitening": {"step_cost"},
    "sequences": {"long_sequences"},
}


def data_args(config: Path, tmp_path: Path) -> list[str]:
    """Real files where they exist here (the MNIST family in ../shared/data), else generated ones."""
    name = load_config(config).dataset.name
    if name == "cifar100":
        return [
            "--data-root",
            str(write_tiny_cifar100(tmp_path / "cifar")),
            "--set",
            "dataset.verify_checksums=false",
            "--set",
            "dataset.trust_unverified_pickles=true",
        ]  # our own generated pickles
    if SHARED_DATA.is_dir():
        return ["--data-root", str(SHARED_DATA)]
    root = tmp_path / "data"
    write_tiny_dataset(root, n_train=1200, n_test=600)
    write_tiny_dataset(root, folder="MNIST", n_train=1200, n_test=600)
    return ["--data-root", str(root), "--set", "dataset.verify_checksums=false"]


def test_every_config_has_a_smoke_profile_and_a_reference_or_is_the_smoke_test():
    for config in CONFIGS:
        cfg = load_config(config)
        assert cfg.smoke, config.name
        assert cfg.reference is not None or config.stem == "smoke", config.name


@pytest.fixture(scope="session")
def decoded_cache(tmp_path_factory) -> Path:
    """One bnexp cache for every smoke run of a test process: the real files are decoded once, not per config
    (decoding and the cache are tested in test_data and test_reliability)."""
    return tmp_path_factory.mktemp("smoke-cache")


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_runs_at_smoke_size(config, tmp_path, decoded_cache, monkeypatch):
    monkeypatch.setenv("BNEXP_CACHE", str(decoded_cache))
    out = tmp_path / "out"
    args = ["run", str(config), "--smoke", "--out", str(out), "--quiet", *data_args(config, tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = load_config(config, smoke=True)
    runs = experiment_runs(out / cfg.name)
    assert len(runs) == len({r.name for r in runs}) > 0
    for run in runs:
        summary = run.summary()
        assert summary["status"] in ("completed", "diverged"), (run.name, summary)
        evals = run.metrics("eval")
        assert evals or summary["status"] == "diverged"
        if cfg.probes and summary["status"] == "completed":
            assert run.probes(), run.name
        if cfg.eval_train_subset and evals:
            assert "train_acc" in evals[-1]
    figures = CliRunner().invoke(app, ["plot", str(out)])
    assert figures.exit_code == 0, figures.output
    drawn = {p.stem for p in (out / cfg.name / "figures").glob("*.png")}
    assert FIGURE_OF.get(config.stem, set()) <= drawn and drawn, drawn
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0 and (out / "REPORT.md").is_file(), report.output


def test_the_seed_counts_in_the_configs_readme_are_the_configs():
    """Issue 38, item 7: a count written in prose goes stale; the experiments table's are checked against the files."""
    import re

    rows = re.findall(r"(?m)^\| `(\w+)\.yaml` \|(.*)$", (REPO / "configs" / "README.md").read_text())
    checked = 0
    for name, rest in rows:
        for count in re.findall(r"(\d+) seeds?\b", rest):
            assert int(count) == len(load_config(REPO / "configs" / f"{name}.yaml").seeds), f"{name}: {count} seeds"
            checked += 1
    assert checked >= 1


def test_the_norms_one_config_compares_have_distinct_colours_from_one_colour_blind_safe_palette():
    """A colour stands for one norm in every figure; two norms of one experiment never share it."""
    from bnexp.config import NORMS

    okabe_ito_and_grey = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}
    assert {n.color for n in NORMS.values()} <= okabe_ito_and_grey | {"#999999"}
    for config in CONFIGS:
        norms = {m.norm for m in load_config(config).models}
        assert len({NORMS[n].color for n in norms}) == len(norms), config.name
