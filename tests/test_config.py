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


# -- grids, lr scaling, per-model seeds --------------------------------------------------------------------


def test_grid_is_a_cartesian_product_with_readable_names(tmp_path):
    text = TINY_CONFIG + "grid:\n  batch_size: [8, 16]\n  models[0].bn_momentum: [0.1, null]\n"
    plans = expand_grid(load_config(write(tmp_path, text)))
    names = [p.name for p in plans]
    assert names[:2] == ["lenet5_b8_bn-momentum0.1_lr1x_s0", "lenet5-bn_b8_bn-momentum0.1_lr1x_s0"]
    assert "lenet5_b16_bn-momentumnone_lr1x_s0" in names and len(names) == 8
    cell = plans[-1]
    assert cell.experiment.batch_size == 16 and cell.experiment.models[0].bn_momentum is None
    assert cell.resolved()["grid"] == {"batch_size": 16, "models[0].bn_momentum": None}


def test_grid_can_be_set_from_the_command_line(tmp_path):
    cfg = load_config(write(tmp_path, TINY_CONFIG), ["grid.batch_size=[8,16]"])
    assert [p.experiment.batch_size for p in expand_grid(cfg)] == [8, 8, 16, 16]


def test_combined_grid_keys_vary_together(tmp_path):
    text = TINY_CONFIG + 'grid:\n  "batch_size,epochs": [[8, 1], [16, 3]]\n'
    plans = expand_grid(load_config(write(tmp_path, text)))
    assert [(p.experiment.batch_size, p.experiment.epochs) for p in plans] == [(8, 1), (8, 1), (16, 3), (16, 3)]
    assert plans[0].name == "lenet5_b8_ep1_lr1x_s0"


def test_grid_values_are_validated_with_their_line(tmp_path):
    text = TINY_CONFIG + "grid:\n  batch_size:\n    - 8\n    - 0\n"
    e = error_of(tmp_path, text)
    assert e.key == "grid.batch_size" and e.where.endswith("c.yaml:18") and "must be >= 1" in str(e)
    e = error_of(tmp_path, TINY_CONFIG + 'grid:\n  "batch_size,epochs": [[8]]\n')
    assert "one for each of batch_size, epochs" in str(e)
    e = error_of(tmp_path, TINY_CONFIG + "grid:\n  seeds: [[1], [2]]\n")
    assert "cannot be a grid key" in str(e)


def test_every_cell_of_a_grid_is_checked_not_only_each_value(tmp_path):
    """Issue 32: batch 4 and processes 4 each pass alone; their cell leaves batch statistics one image."""
    e = error_of(tmp_path, TINY_CONFIG + "grid:\n  batch_size: [4, 8]\n  processes: [1, 4]\n")
    assert e.key == "grid" and "the cell batch_size=4, processes=4: batch_size: 4 over 4 processes" in str(e)
    e = error_of(tmp_path, TINY_CONFIG + "grid:\n  batch_size: [2, 8]\n  processes: [1, 4]\n")
    assert "the cell batch_size=2, processes=4: batch_size: 2 (the global batch) is not divisible" in str(e)
    e = error_of(  # each value alone is fine with the base models (no norm); BN at batch 1 is not (fc layers)
        tmp_path,
        TINY_CONFIG + "grid:\n  models: [[{name: lenet5, norm: none}], [{name: lenet5}]]\n  batch_size: [1, 32]\n",
        ["models=[{name: lenet5, norm: none}]"],
    )
    assert "the cell models=[{'name': 'lenet5'}], batch_size=1: batch_size: batch_size 1 cannot train" in str(e)
    fine = TINY_CONFIG + "grid:\n  batch_size: [8, 16]\n  processes: [1, 4]\n"
    assert len(expand_grid(load_config(write(tmp_path, fine)))) == 4 * 2


def test_a_grid_whose_cell_breaks_a_rule_exits_2_and_writes_nothing(tiny_config, tiny_root, tmp_path):
    from typer.testing import CliRunner

    from bnexp.cli import app

    tiny_config.write_text(tiny_config.read_text() + "grid:\n  batch_size: [2, 8]\n  processes: [1, 4]\n")
    result = CliRunner().invoke(
        app, ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "the cell batch_size=2, processes=4" in result.stderr
    assert not (tmp_path / "out").exists()


def test_linear_lr_scaling(tmp_path):
    text = TINY_CONFIG + "lr_scaling: linear\nlr_base_batch: 32\ngrid:\n  batch_size: [8, 64]\n"
    plans = expand_grid(load_config(write(tmp_path, text)))
    assert [p.lr for p in plans] == [pytest.approx(0.003 * 8 / 32)] * 2 + [pytest.approx(0.003 * 2)] * 2
    assert "lr_base_batch" in str(error_of(tmp_path, TINY_CONFIG + "lr_scaling: linear\n"))


def test_a_model_may_add_seeds_and_lrs_to_its_variant(tmp_path):
    extra = "  - {name: lenet5, norm: none, lr_multipliers: [5], seeds: [7, 8]}\n"
    text = TINY_CONFIG.replace("optimizer:", extra + "optimizer:") + "lr_multipliers: [1, 5]\n"
    names = [p.name for p in expand_grid(load_config(write(tmp_path, text)))]
    assert names.count("lenet5_lr5x_s0") == 1 and "lenet5_lr5x_s7" in names and "lenet5_lr5x_s8" in names
    plans = {p.name: p for p in expand_grid(load_config(write(tmp_path, text)))}
    assert plans["lenet5_lr5x_s7"].resolved()["model"] == plans["lenet5_lr5x_s0"].resolved()["model"]
    clash = TINY_CONFIG.replace("optimizer:", "  - {name: lenet5, norm: none, dropout: 0.5}\noptimizer:")
    assert "different model" in str(error_of(tmp_path, clash))


# -- issue 15: everything that reaches a path, a size or a number is validated up front ---------------------


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (
            ("{name: lenet5, norm: none}", '{name: lenet5, norm: none, label: "../../victim/data"}'),
            "models[0].label",
            "is not allowed",
        ),
        (
            ("{name: lenet5, norm: none}", "{name: lenet5, norm: none, label: /abs}"),
            "models[0].label",
            "is not allowed",
        ),
        (("{name: lenet5, norm: none}", "{name: lenet5, norm: none, label: a/b}"), "models[0].label", "is not allowed"),
        (
            ("{name: lenet5, norm: none}", "{name: lenet5, norm: none, label: " + "x" * 300 + "}"),
            "models[0].label",
            "is not allowed",
        ),
        (("name: tiny", "name: .hidden"), "name", "is not allowed"),
        (("name: tiny", "name: ../up"), "name", "is not allowed"),
        (("lr: 0.003", "lr: .nan"), "optimizer.lr", "finite"),
        (("lr: 0.003", "lr: .inf"), "optimizer.lr", "finite"),
        (("seeds: [0]", "seeds: [4294967296]"), "seeds[0]", "<= 4.29497e+09"),
        (("seeds: [0]", "seeds: [-1]"), "seeds[0]", ">= 0"),
        (("log_every: 4", "log_every: 4000000000"), "log_every", "<= 100000"),
        (("verify_checksums: false", "verify_checksums: false\n  subset: 20"), "dataset.subset", "cannot fill"),
        (("device: cpu", "device: cpu\neval_train_subset: 70000"), "eval_train_subset", "between"),
        (("device: cpu", "device: cpu\nprobes: {range: [6, -6]}"), "probes.range", "low < high"),
        (("device: cpu", "device: cpu\nprobes: {range: [1]}"), "probes.range", "two numbers"),
        (("device: cpu", "device: cpu\nprobes: {range: [1, .inf]}"), "probes.range[1]", "finite"),
        (("device: cpu", "device: cpu\nprobes: {unit: 500}"), "probes.unit", "not a channel"),
        (("device: cpu", "device: cpu\nprobes: {layers: [9]}"), "probes.layers", "out of range"),
        (("norm: none}", "norm: none, bn_momentum: .nan}"), "models[0].bn_momentum", "finite"),
        (("norm: none}", "norm: none, init_std: .inf}"), "models[0].init_std", "finite"),
        (("device: cpu", "device: cpu\nloss_ceiling: .nan"), "loss_ceiling", "finite"),
        (("device: cpu", "device: cpu\nlr_multipliers: [1, 1.0000001]"), "lr_multipliers/grid", "share the name"),
        (("device: cpu", "device: cpu\nprocesses: 3"), "batch_size", "not divisible"),
        (("device: cpu", "device: cpu\nprocesses: 32"), "batch_size", "at least 2"),
        (("seeds: [0]", "seeds: [0, 1, 2]\ninterim_looks: [3]"), "interim_looks", "below the 3 seeds"),
        (("seeds: [0]", "seeds: [0, 1, 2]\ninterim_looks: [2, 1]"), "interim_looks", "increasing"),
        (("seeds: [0]", "seeds: [0, 1, 2]\ninterim_looks: [0]"), "interim_looks[0]", ">= 1"),
        (("seeds: [0]", "seeds: [0, 1, 2]\ninterim_looks: [1, 2, 3, 4, 5, 6]"), "interim_looks", "at most 5"),
    ],
)
def test_validated_up_front(tmp_path, edit, key, fragment):
    assert edit[0] in TINY_CONFIG
    e = error_of(tmp_path, TINY_CONFIG.replace(*edit))
    assert e.key == key and fragment in str(e), str(e)
    assert "c.yaml:" in e.where


def test_duplicate_yaml_keys_are_an_error_with_both_lines(tmp_path):
    e = error_of(tmp_path, TINY_CONFIG + "batch_size: 64\n")
    assert "duplicate key 'batch_size'" in str(e) and "c.yaml:" in e.where


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("b: " + "[" * 50 + "]" * 50 + "\n", "nesting"),
        (
            "x: &x ["
            + ", ".join(["1"] * 10)
            + "]\n"
            + "\n".join(
                f"y{i}: &y{i} [" + ", ".join([f"*{'x' if i == 0 else f'y{i - 1}'}"] * 10) + "]" for i in range(6)
            )
            + "\n",
            "expands to more than",
        ),
        ("a: &a [*a]\n", "alias"),
    ],
)
def test_yaml_bombs_are_refused(tmp_path, text, fragment):
    e = error_of(tmp_path, text)
    assert fragment in str(e).lower(), str(e)


def test_subset_must_hold_every_class(tmp_path):
    text = TINY_CONFIG.replace("verify_checksums: false", "verify_checksums: false\n  subset: 5")
    e = error_of(tmp_path, text.replace("batch_size: 32", "batch_size: 4"))
    assert e.key == "dataset.subset" and "one of each of the 10 classes" in str(e)


def test_set_parses_exponent_floats(tmp_path):
    assert load_config(write(tmp_path, TINY_CONFIG), ["optimizer.lr=1e-4"]).optimizer.lr == 1e-4


def test_processes_rules(tmp_path):
    sync = TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, norm: naive_batchnorm}")
    e = error_of(tmp_path, sync + "processes: 2\nbn_sync: sync\n")
    assert e.key == "bn_sync" and "naive_batchnorm" in str(e)
    for norm in ("l1_batchnorm", "linf_batchnorm", "decorrelated_batchnorm"):
        lp = TINY_CONFIG.replace("{name: lenet5, norm: none}", f"{{name: lenet5, norm: {norm}}}")
        e = error_of(tmp_path, lp + "processes: 2\nbn_sync: sync\n")
        assert e.key == "bn_sync" and f"not available for {norm}" in str(e)
    e = error_of(tmp_path, TINY_CONFIG + "processes: 2\nlandscape_probe: {every_steps: 5}\n")
    assert e.key == "landscape_probe"
    cfg = load_config(write(tmp_path, TINY_CONFIG + "processes: 2\n"))
    assert cfg.processes == 2 and expand_grid(cfg)[0].resolved()["processes"] == 2


# -- reference series ----------------------------------------------------------------------------------------


def write_series(folder: Path, name: str = "ref.json", values=(2.3, 2.2, 1.0)) -> None:
    import json

    (folder / name).write_text(json.dumps({"source": {"path": "x.py"}, "series": {"loss": {"values": list(values)}}}))


def test_series_references_load_and_errors_name_file_and_line(tmp_path):
    write_series(tmp_path)
    ok = TINY_CONFIG + (
        "reference:\n  source: test\n  series:\n    lenet5_lr1x:\n"
        "      - {file: ref.json, key: loss, quantity: train_loss_per_step}\n"
    )
    cfg = load_config(write(tmp_path, ok))
    assert cfg.reference.series["lenet5_lr1x"][0].key == "loss"
    for edit, fragment in [
        (("key: loss", "key: nope"), "has no series 'nope'; it has: loss"),
        (("file: ref.json", "file: missing.json"), "not found"),
        (("file: ref.json", "file: sub/../../ref.json"), "must be a path inside"),
        (("file: ref.json", "file: ../ref.json"), "a relative path inside"),
        (("file: ref.json", "file: /etc/passwd"), "a relative path inside"),
        (("quantity: train_loss_per_step", "quantity: speed"), "allowed: train_loss_per_step"),
    ]:
        e = error_of(tmp_path, ok.replace(*edit))
        assert fragment in str(e) and e.where.endswith(":19"), (edit, str(e))
    write_series(tmp_path, values=(2.3, float("nan")))
    assert "finite numbers" in str(error_of(tmp_path, ok))
    (tmp_path / "ref.json").write_text("{not json")
    assert "not readable JSON" in str(error_of(tmp_path, ok))


def test_a_huge_plan_is_refused_before_it_is_built(tmp_path):
    """Issue 19, item 8: counted, not expanded; the limit is named with the option that raises it."""
    import time

    models = "[" + ", ".join(f"{{name: lenet5, norm: none, label: m{i}}}" for i in range(100)) + "]"
    started = time.monotonic()
    e = error_of(
        tmp_path,
        TINY_CONFIG,
        [f"models={models}", f"lr_multipliers={list(range(1, 101))}", f"seeds={list(range(1000))}"],
    )
    assert "10,000,000 runs" in e.message and "--max-runs" in e.message
    grid = {
        "models[0].bn_eps": [1e-5 * (i + 1) for i in range(100)],
        "optimizer.lr": [0.001 * (i + 1) for i in range(100)],
        "batch_size": list(range(2, 102)),
    }
    e = error_of(tmp_path, TINY_CONFIG, [f"grid={grid}"])
    assert "2,000,000 runs" in e.message
    assert time.monotonic() - started < 10
    assert load_config(write(tmp_path, TINY_CONFIG), ["seeds=[0, 1, 2]"], max_runs=6).seeds == [0, 1, 2]


def test_eval_modes_settings_are_bounded_by_the_data(tmp_path):
    """Issue 19, item 12."""
    e = error_of(tmp_path, TINY_CONFIG, ["analyses={eval_modes: {groups: 10000, group_size: 4096}}"])
    assert e.key == "analyses.eval_modes" and "more than the 10,000 test images" in e.message


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (['grid={"batch_size,batch_size": [[8, 16]]}'], "varied twice"),
        (['grid={"batch_size": [8], "batch_size, processes": [[16, 2]]}'], "varied twice"),
        (["processes=2", "bn_sync=sync", "models=[{name: lenet5, norm: groupnorm}]"], "no model here has a batch norm"),
        (["processes=2", "bn_sync=sync", "models=[{name: lenet5, norm: none}]"], "no model here has a batch norm"),
    ],
)
def test_grids_and_sync_that_would_do_nothing_are_refused(tmp_path, overrides, words):
    """Issue 19, item 20."""
    assert words in error_of(tmp_path, TINY_CONFIG, overrides).message


def test_whitening_group_belongs_to_decorrelated_batchnorm(tmp_path):
    text = TINY_CONFIG.replace("{name: lenet5, norm: none}", "{name: lenet5, norm: none, whitening_group: 8}")
    e = error_of(tmp_path, text)
    assert e.key == "models[0].whitening_group" and "decorrelated_batchnorm" in str(e) and e.where.endswith(":6")
    dbn = TINY_CONFIG.replace(
        "{name: lenet5, norm: none}", "{name: lenet5, norm: decorrelated_batchnorm, whitening_group: 8}"
    )
    assert load_config(write(tmp_path, dbn)).models[0].whitening_group == 8


def test_long_sequences_need_a_recurrent_model(tmp_path):
    text = TINY_CONFIG + "keep_final_weights: true\nanalyses: {long_sequences: {stretch: [1, 2]}}\n"
    with pytest.raises(ConfigError, match="only a recurrent model") as e:
        load_config(write(tmp_path, text))
    assert e.value.key == "analyses.long_sequences"
    rnn = text.replace("{name: lenet5, norm: none}", "{name: lstm, norm: none}").replace(
        "{name: lenet5, norm: batchnorm}", "{name: lstm, norm: layernorm}"
    )
    assert load_config(write(tmp_path, rnn)).analyses.long_sequences.stretch == [1, 2]


def test_interim_looks_change_no_run(tmp_path):
    """Recording an earlier look is about the verdicts, not the runs: no finished run is invalidated."""
    from bnexp.config import config_diff

    two = TINY_CONFIG.replace("seeds: [0]", "seeds: [0, 1]")
    before = expand_grid(load_config(write(tmp_path, two)))
    after = expand_grid(load_config(write(tmp_path, two + "interim_looks: [1]\n")))
    assert after[0].experiment.interim_looks == [1]
    assert all(not config_diff(a.resolved(), b.resolved()) for a, b in zip(before, after, strict=True))


def test_the_checks_against_models_and_data_run_once_per_setting_they_read(tmp_path, monkeypatch):
    """Issue 37, item 20: a grid of 1,000 learning rates built its models 1,001 times before it was planned."""
    from bnexp import validate

    calls = []
    real = validate.check_against_models_and_data
    counted = lambda cfg, where: calls.append(1) or real(cfg, where)  # noqa: E731
    monkeypatch.setattr(validate, "check_against_models_and_data", counted)
    lrs = ", ".join(str(0.001 * (1 + i)) for i in range(100))
    cfg = load_config(write(tmp_path, TINY_CONFIG + f"grid:\n  optimizer.lr: [{lrs}]\n  batch_size: [8, 16]\n"))
    assert len(expand_grid(cfg)) == 100 * 2 * 2 and len(calls) == 3  # the config as written, batch 8, batch 16


def test_the_checks_against_models_and_data_are_given_only_what_they_run_once_per(tmp_path):
    """Issue 32: the fields that key the checks' runs are the fields the checks are given (validate.Checked), so a
    check that read another one (a grid over it would be checked at one cell) raises instead."""
    from dataclasses import fields

    from bnexp.config import ExperimentConfig
    from bnexp.validate import Checked

    cfg = load_config(write(tmp_path, TINY_CONFIG))
    checked = Checked.of(cfg)
    assert {f.name for f in fields(Checked)} <= set(ExperimentConfig.model_fields)
    assert checked.models == cfg.models and checked.batch_size == cfg.batch_size
    with pytest.raises(AttributeError, match="seeds"):
        checked.seeds  # noqa: B018


# -- the schema's errors in bnexp's words (bnexp.config.errors) -----------------------------------------------

CLAIM = (
    "claims:\n  - {id: c1, claim: x, source: a5, quote: q, kind: article, registered: 2026-12-01, "
    "quantity: final_test_acc, "
    "group: lenet5-bn_lr1x, expect: greater%s}\n"
)


@pytest.mark.parametrize(
    ("extra", "key", "fragment", "line"),
    [
        # a union with no fitting type: the union's types, and the value as written
        (CLAIM % ", value: 0.5, at: true", "claims[0].at", "expected a number or a string or null, got True", 16),
        # a union whose list alternative fits but one element is out of range: that element's range
        ("probes: {layers: [1, 2000]}\n", "probes.layers[1]", "must be <= 1000 (got 2000)", 15),
        ("probes: {layers: first}\n", "probes.layers", "expected one of all, last or a list of an integer", 15),
        # a rule of one model, at the line of the key it is about
        (CLAIM % ", value: 0.5, margin: 0.1", "claims[0].margin", "a margin is for expect: equivalent", 16),
        # a mapping's key of the wrong type
        (
            "reference: {source: s, test_acc_at_epoch: {lenet5_lr1x: {two: 0.5}}}\n",
            "reference.test_acc_at_epoch",
            "",
            15,
        ),
        # a nested model given as a scalar
        ("ics_probe: 5\n", "ics_probe", "expected a mapping with keys every_steps or null, got 5", 15),
    ],
)
def test_schema_errors_name_the_key_and_what_is_allowed(tmp_path, extra, key, fragment, line):
    e = error_of(tmp_path, TINY_CONFIG + extra)
    assert e.key.startswith(key) and fragment in e.message, str(e)
    assert e.where.endswith(f"c.yaml:{line}"), e.where


def test_recorded_claims_are_checked_by_the_same_schema():
    from bnexp.config import ClaimConfig, from_dict

    claim = {
        "id": "c",
        "claim": "x",
        "source": "a5",
        "quote": "q",
        "kind": "article",
        "registered": "2026-12-01",
        "quantity": "final_test_acc",
        "group": "g",
    }
    claim["expect"] = "equivalent"
    with pytest.raises(ConfigError) as e:
        from_dict(list[ClaimConfig], [claim], "experiment.yaml: claims")
    assert e.value.where == "experiment.yaml: claims" and e.value.key == "[0].versus"
    assert "needs versus" in e.value.message
    margin = {"versus": "h", "margin": 0.01, "margin_why": "m"}
    assert from_dict(list[ClaimConfig], [{**claim, **margin}], "x")[0].margin == 0.01


def test_the_norm_table_says_what_each_norm_is():
    from bnexp.config import BATCH_NORMS, NORMS, WEIGHT_NORMS, ModelConfig

    assert set(BATCH_NORMS) >= {"batchnorm", "torch_batchnorm", "batchrenorm", "decorrelated_batchnorm"}
    assert set(WEIGHT_NORMS) == {"weightnorm", "spectralnorm"} and not set(BATCH_NORMS) & set(WEIGHT_NORMS)
    # colours are distinct among the norms of each config (test_configs), from a colour-blind-safe palette of 9:
    # 14 norms cannot all differ
    assert len({n.tag for n in NORMS.values()}) == len(NORMS)
    # each norm's own option belongs to it only
    assert ModelConfig(name="m", norm="batchrenorm", renorm={"r_max": 2}).renorm.r_max == 2
    with pytest.raises(ValueError, match="only for norm: batchrenorm"):
        ModelConfig(name="m", norm="batchnorm", renorm={"r_max": 2})


def test_sync_names_the_norms_it_can_synchronize(tmp_path):
    text = TINY_CONFIG.replace("norm: batchnorm}", "norm: l1_batchnorm}") + "processes: 2\nbn_sync: sync\n"
    e = error_of(tmp_path, text)
    assert e.key == "bn_sync" and "not available for l1_batchnorm" in e.message
    assert "batchnorm (any backend), torch_batchnorm (CUDA)" in e.message


def test_a_grid_cell_breaking_a_rule_of_two_keys_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from bnexp.cli import app

    text = TINY_CONFIG + "grid:\n  batch_size: [2, 8]\n  processes: [1, 4]\n"
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(write(tmp_path, text)), "--out", str(out)])
    assert result.exit_code == 2 and "the cell batch_size=2, processes=4" in result.output
    assert not out.exists()


def test_a_norm_position_needs_a_norm(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: x\ndataset: {name: fashion_mnist}\n"
        "models:\n  - {name: lenet5, norm: none, norm_position: after_activation}\n"
        "optimizer: {name: sgd, lr: 0.1}\nbatch_size: 8\nepochs: 1\nseeds: [0]\n"
    )
    with pytest.raises(ConfigError, match="a position for the norm needs a norm"):
        load_config(path)


def test_multiplicity_is_holm_by_default_changes_no_run_and_is_one_of_two_words(tmp_path):
    """How an experiment's article claims are decided (issue 34, item 1): not what a run computes."""
    from bnexp.config import config_diff

    before = expand_grid(load_config(write(tmp_path, TINY_CONFIG)))
    after = expand_grid(load_config(write(tmp_path, TINY_CONFIG + "multiplicity: none\n")))
    assert before[0].experiment.multiplicity == "holm" and after[0].experiment.multiplicity == "none"
    assert all(not config_diff(a.resolved(), b.resolved()) for a, b in zip(before, after, strict=True))
    e = error_of(tmp_path, TINY_CONFIG + "multiplicity: bonferroni\n")
    assert "multiplicity" in str(e) and "holm" in str(e)
