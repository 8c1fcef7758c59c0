from __future__ import annotations

from pathlib import Path

import pytest

from bnexp.config import ConfigError, expand_grid
from bnexp.validate import load as load_config

from .conftest import TINY_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), overrides)
    return e.value


def test_parses_shipped_configs():
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.name == path.stem
        assert expand_grid(cfg)


def test_defaults_and_types(tmp_path):
    cfg = load_config(write(tmp_path, TINY_CONFIG))
    assert cfg.lr_multipliers == [1.0]
    assert cfg.optimizer.lr == 0.003 and isinstance(cfg.optimizer.lr, float)
    assert cfg.models[1].norm == "batchnorm" and cfg.models[1].bn_momentum == 0.1
    assert cfg.dataset.normalize == "standardize"


def test_grid_expansion_names_and_order(tmp_path):
    text = TINY_CONFIG.replace("seeds: [0]", "seeds: [0, 1]") + "lr_multipliers: [1, 5, 0.5]\n"
    plans = expand_grid(load_config(write(tmp_path, text)))
    names = [p.name for p in plans]
    assert names[:6] == [
        "lenet5_lr1x_s0",
        "lenet5_lr1x_s1",
        "lenet5_lr5x_s0",
        "lenet5_lr5x_s1",
        "lenet5_lr0.5x_s0",
        "lenet5_lr0.5x_s1",
    ]
    assert names[6] == "lenet5-bn_lr1x_s0" and len(names) == 12
    assert plans[2].lr == pytest.approx(0.015)
    assert plans[6].resolved()["model"]["norm"] == "batchnorm"


def test_sigmoid_and_label_in_names(tmp_path):
    text = TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, norm: none, activation: sigmoid}")
    text = text.replace("{name: lenet5, norm: batchnorm}", "{name: lenet5, label: mine}")
    assert [p.name for p in expand_grid(load_config(write(tmp_path, text)))] == [
        "lenet5-sigmoid_lr1x_s0",
        "mine_lr1x_s0",
    ]


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG.replace("batch_size: 32", "batch_sise: 32"))
    assert e.where.endswith("c.yaml:9") and e.key == "batch_sise"
    assert "did you mean 'batch_size'" in str(e) and "allowed:" in str(e)


def test_unknown_nested_key(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, nrom: none}"))
    assert e.key == "models[0].nrom" and e.where.endswith(":6") and "did you mean 'norm'" in str(e)


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ("batch_size: 32", "batch_size: many", "batch_size", "expected an integer"),
        ("batch_size: 32", "batch_size: 0", "batch_size", "must be >= 1"),
        ("lr: 0.003", "lr: -0.1", "optimizer.lr", "must be > 0"),
        ("lr: 0.003", "lr: 0", "optimizer.lr", "must be > 0"),
        ("name: adam", "name: rmsprop", "optimizer.name", "allowed: sgd, adam"),
        ("norm: none}", "norm: batchnrom}", "models[0].norm", "allowed: batchnorm, torch_batchnorm"),
        ("{name: lenet5, norm: none}", "{name: lenet7}", "models[0].name", "allowed: "),
        ("name: fashion_mnist", "name: cifar1000", "dataset.name", "allowed: fashion_mnist, mnist"),
        ("seeds: [0]", "seeds: []", "seeds", "must not be empty"),
        ("seeds: [0]", "seeds: 0", "seeds", "expected a list of an integer"),
        ("seeds: [0]", "seeds: [0, 0]", "seeds", "duplicate"),
        ("device: cpu", "device: tpu", "device", "allowed: auto, cpu, cuda, mps"),
        ("epochs: 2", "epochs: 2\nsteps: 10", "epochs/steps", "exactly one"),
        ("epochs: 2", "steps: 10", "eval_every", "need eval_every"),
        ("verify_checksums: false", "verify_checksums: false\n  subset: 70000", "dataset.subset", "larger than"),
        ("name: tiny", "name: 'bad name'", "name", "is not allowed"),
    ],
)
def test_bad_values(tmp_path, old, new, key, fragment):
    assert old in TINY_CONFIG
    e = error_of(tmp_path, TINY_CONFIG.replace(old, new))
    assert e.key == key
    assert fragment in str(e)
    assert "c.yaml:" in e.where


def test_lr_multiplier_item_range(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG + "lr_multipliers: [1, -5]\n")
    assert e.key == "lr_multipliers[1]" and "must be > 0" in str(e)


def test_missing_required_key(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG.replace("batch_size: 32\n", ""))
    assert e.key == "batch_size" and "missing required key" in str(e)


def test_batch_size_one_with_batchnorm(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG.replace("batch_size: 32", "batch_size: 1"))
    assert e.key == "batch_size" and "BatchNorm" in str(e)


def test_groupnorm_groups_must_divide_channels(tmp_path):
    text = TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, norm: groupnorm, groups: 4}")
    e = error_of(tmp_path, text)
    assert e.key == "models[0]" and "does not divide" in str(e) and e.where.endswith(":6")


def test_duplicate_run_names(tmp_path):
    text = TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, norm: batchnorm, bn_momentum: 0.01}")
    e = error_of(tmp_path, text)
    assert "same run name" in str(e) and "label" in str(e)


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG.replace("batch_size: 32", "batch_size: [32"))
    assert "YAML syntax error" in str(e)
    assert e.where.count(":") == 2  # file:line:column


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_mapping(tmp_path):
    assert "mapping" in str(error_of(tmp_path, "- 1\n- 2\n"))


def test_overrides_apply_in_order_and_parse_yaml(tmp_path):
    cfg = load_config(
        write(tmp_path, TINY_CONFIG),
        [
            "optimizer.lr=0.5",
            "optimizer.lr=0.25",
            "seeds=[3, 4]",
            "models[1].norm=torch_batchnorm",
            "models.0.activation=sigmoid",
            "dataset.subset=100",
        ],
    )
    assert cfg.optimizer.lr == 0.25 and cfg.seeds == [3, 4]
    assert cfg.models[1].norm == "torch_batchnorm" and cfg.models[0].activation == "sigmoid"
    assert cfg.dataset.subset == 100


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("optimizer.lr", "expected KEY.PATH=VALUE"),
        ("optimizer.lr=-1", "must be > 0"),
        ("optimizer.lrr=1", "did you mean 'lr'"),
        ("models[5].norm=none", "index 5 is not in 0..1"),
        ("batch_size.x=3", "cannot index"),
        ("seeds=[1, 2", "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_override(tmp_path, override, fragment):
    e = error_of(tmp_path, TINY_CONFIG, [override])
    assert e.where.startswith("--set ")
    assert fragment in str(e)
