from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import bnexp
from bnexp.cli import app

cli = CliRunner()


def invoke(*args: str):
    return cli.invoke(app, list(args))


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"bnexp {bnexp.__version__}"


def test_help_has_examples():
    assert "Example" in invoke("--help").stdout
    out = invoke("run", "--help").stdout
    assert "bnexp run configs/lenet5_bn.yaml" in out and "--set" in out and "Exit codes" in out


def test_run_completes_with_exit_0(tiny_config, tiny_root, tmp_path):
    result = invoke(
        "run",
        str(tiny_config),
        "--data-root",
        str(tiny_root),
        "--out",
        str(tmp_path / "r"),
        "--set",
        "epochs=1",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "lenet5-bn_lr1x_s0" in result.stdout and "2 completed" in result.stdout
    summary = json.loads((tmp_path / "r" / "tiny" / "lenet5-bn_lr1x_s0" / "summary.json").read_text())
    assert summary["epochs"] == 1.0


def test_bad_config_exits_2_with_one_message_and_writes_nothing(tiny_config, tiny_root, tmp_path):
    result = invoke(
        "run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path / "r"), "--set", "optimizer.lr=-1"
    )
    assert result.exit_code == 2
    assert "error: --set optimizer.lr=-1: optimizer.lr: must be > 0" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_bad_config_file_line(tiny_config, tiny_root, tmp_path):
    tiny_config.write_text(tiny_config.read_text().replace("epochs: 2", "epochs: two"))
    result = invoke("run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and f"{tiny_config}:10: epochs: expected an integer" in result.stderr


def test_missing_data_exits_2(tiny_config, tmp_path):
    result = invoke("run", str(tiny_config), "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 2 and "fashion_mnist not found" in result.stderr
    assert not (tmp_path / "r").exists()


def test_bad_device_and_unwritable_out(tiny_config, tiny_root, tmp_path):
    assert invoke("run", str(tiny_config), "--device", "tpu").exit_code == 2
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(blocker))
    assert result.exit_code == 2 and "not writable" in result.stderr


def test_unknown_option_is_usage_error():
    assert invoke("run", "x.yaml", "--bogus").exit_code == 2


def test_failed_run_exits_1(tiny_config, tiny_root, tmp_path, monkeypatch):
    from bnexp import train

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(train.Trainer, "fit", boom)
    result = invoke("run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 1 and "failed runs: lenet5_lr1x_s0, lenet5-bn_lr1x_s0" in result.stdout


BAD_INPUTS = [
    # (case, edit of the config text or None, extra CLI args, expected message fragment)
    ("yaml syntax", ("batch_size: 32", "batch_size: [32"), [], "YAML syntax error"),
    ("unknown key", ("batch_size: 32", "batch_sise: 32"), [], "did you mean 'batch_size'"),
    ("wrong type", ("epochs: 2", "epochs: two"), [], "epochs: expected an integer"),
    ("lr <= 0", ("lr: 0.003", "lr: 0"), [], "optimizer.lr: must be > 0"),
    ("batch_size < 1", ("batch_size: 32", "batch_size: 0"), [], "batch_size: must be >= 1"),
    ("empty seeds", ("seeds: [0]", "seeds: []"), [], "seeds: must not be empty"),
    ("subset too large", ("verify_checksums: false", "verify_checksums: false\n  subset: 60001"), [], "larger than"),
    ("unknown model", ("{name: lenet5, norm: none}", "{name: resnet9}"), [], "allowed: alexnet, alexnet_small"),
    ("unknown norm", ("norm: none}", "norm: batchnorn}"), [], "allowed: batchnorm, torch_batchnorm"),
    ("unknown optimizer", ("name: adam", "name: lamb"), [], "allowed: sgd, adam"),
    ("unknown dataset", ("name: fashion_mnist", "name: svhn"), [], "allowed: fashion_mnist, mnist, cifar100"),
    ("batch 1 with BN", ("batch_size: 32", "batch_size: 1"), [], "BatchNorm needs 2+ values"),
    ("bad --set path", None, ["--set", "models[9].norm=none"], "index 9 is not in 0..1"),
    ("bad --set value", None, ["--set", "seeds=[0,"], "not valid YAML"),
    ("bad --set key", None, ["--set", "optimiser.lr=1"], "did you mean 'optimizer'"),
    ("missing config", "missing", [], "config file not found"),
    ("missing data", "no-data", [], "fashion_mnist not found"),
    ("truncated data", "truncated", [], "truncated or corrupted"),
    ("corrupted data", "corrupted", [], "checksum mismatch"),
    ("unwritable out", "unwritable", [], "not writable"),
]


@pytest.mark.parametrize(("case", "edit", "extra", "fragment"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    case, edit, extra, fragment, tiny_config, tiny_root, tmp_path
):
    config, root, out = tiny_config, tiny_root, tmp_path / "out"
    raw = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if isinstance(edit, tuple):
        assert edit[0] in config.read_text()
        config.write_text(config.read_text().replace(*edit, 1))
    elif edit == "missing":
        config = tmp_path / "nope.yaml"
    elif edit == "no-data":
        root = tmp_path / "empty"
    elif edit == "truncated":
        raw.write_bytes(raw.read_bytes()[:500])
    elif edit == "corrupted":
        extra = ["--set", "dataset.verify_checksums=true"]
    elif edit == "unwritable":
        out.write_text("a file where the output folder should be")
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    result = invoke("run", str(config), "--data-root", str(root), "--out", str(out), *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[0].startswith("error: ") and fragment in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_bad_world_size_is_a_usage_error(tiny_config, tiny_root, tmp_path, monkeypatch, value):
    """Issue 19, item 17."""
    monkeypatch.setenv("WORLD_SIZE", value)
    result = CliRunner().invoke(app, ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "WORLD_SIZE" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "tiny").exists()


def test_a_grid_key_with_a_space_still_meets_the_nproc_guard(tiny_config, tiny_root, tmp_path):
    """Issue 19, item 20: "bn_sync, processes" is the processes key too."""
    grid = 'grid={"bn_sync, processes": [[local, 2]]}'
    result = CliRunner().invoke(
        app,
        ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--set", grid, "--nproc", "2"],
    )
    assert result.exit_code == 2 and "grid varies processes" in result.output


def test_run_writes_into_runs_by_default(tiny_config, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "run",
        str(tiny_config),
        "--data-root",
        str(tiny_root),
        "--set",
        "seeds=[0]",
        "--set",
        "models=[{name: lenet5, norm: none}]",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "tiny" / "lenet5_lr1x_s0" / "summary.json").is_file()


def test_committed_results_are_written_only_on_purpose_and_never_restarted(tiny_config, tiny_root, tmp_path):
    from bnexp.store import COMMITTED_MARK

    committed = tmp_path / "results"
    committed.mkdir()
    (committed / COMMITTED_MARK).write_text("committed\n")
    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--set", "seeds=[0]", "--quiet"]
    for out in (committed, committed / "sub"):  # the mark also covers the folders below it
        result = invoke(*args, "--out", str(out))
        assert result.exit_code == 2 and "holds committed results" in result.stderr
        assert "--write-committed" in result.stderr
    for restart in (["--restart", "--yes"], ["--restart-run", "lenet5_lr1x_s0"]):
        result = invoke(*args, "--out", str(committed), "--write-committed", *restart)
        assert result.exit_code == 2 and "would delete them" in result.stderr
    assert sorted(p.name for p in committed.iterdir()) == [COMMITTED_MARK]  # nothing written
    assert invoke(*args, "--out", str(committed), "--dry-run").exit_code == 2  # the dry run refuses as the run does
    bad = tmp_path / "bad.yaml"  # a config's own error comes first, as without the mark
    bad.write_text(tiny_config.read_text().replace("batch_size: 32", "batch_sise: 32"))
    result = invoke("run", str(bad), "--out", str(committed), "--dry-run")
    assert result.exit_code == 2 and "batch_sise" in result.stderr and "holds committed results" not in result.stderr
    assert invoke(*args, "--out", str(committed), "--dry-run", "--write-committed").exit_code == 0
    result = invoke(*args, "--out", str(committed), "--write-committed")
    assert result.exit_code == 0, result.output
    assert (committed / "tiny" / "lenet5_lr1x_s0" / "summary.json").is_file()


def test_list_shows_running_interrupted_and_not_started_runs_and_writes_nothing(tmp_path):
    """Issue 38, item 5: a run a process trains now (holds its lock) is running, an interrupted one interrupted
    (no outcome of a finished run), and the plan's runs with no folder yet are not started, in plan order, in
    both outputs; list takes no lock and writes nothing."""
    import shutil

    from bnexp.lock import run_lock
    from bnexp.store import RunDir

    from .rundata import write_experiment

    exp = write_experiment(tmp_path)
    stopped, running, absent = "lenet5-bn_lr1x_s0", "lenet5-bn_lr1x_s1", "lenet5-bn_lr5x_s1"
    RunDir(exp / stopped).write_summary({**RunDir(exp / stopped).summary(), "status": "interrupted"})
    (exp / running / "summary.json").unlink()
    shutil.rmtree(exp / absent)
    with run_lock(exp / running):
        before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")}
        text = invoke("list", str(tmp_path))
        js = invoke("list", str(tmp_path), "--json")
        assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")} == before
    assert text.exit_code == 0 and js.exit_code == 0, text.output
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    by_run = {r["run"]: r for r in rows}
    assert len(rows) == 8 and [r["run"] for r in rows][4:] == [stopped, running, "lenet5-bn_lr5x_s0", absent]
    assert by_run[stopped]["status"] == by_run[stopped]["outcome"] == "interrupted"
    assert by_run[running]["status"] == "running" and by_run[running]["outcome"] == "unfinished"
    assert by_run[absent] == {
        "experiment": "synthetic",
        "run": absent,
        "status": "not started",
        "seed": None,
        "final_test_acc": None,
        "best_test_acc": None,
        "train_time_s": None,
        "outcome": None,
    }
    lines = {line.split()[1]: line for line in text.stdout.splitlines()[1:] if len(line.split()) > 1}
    assert "interrupted" in lines[stopped] and "running" in lines[running]
    assert "not started" in lines[absent] and "None" not in lines[absent]
    assert "running" not in invoke("list", str(tmp_path)).stdout  # the lock released: no longer running
    with (exp / running / "metrics.jsonl").open("a") as f:
        f.write('{"event": "train", "st')  # a line being written
    with run_lock(exp / running):
        result = invoke("list", str(tmp_path), "--json")
    assert result.exit_code == 0 and "warning" not in result.output  # not "damaged": being trained
    assert {json.loads(line)["run"]: json.loads(line)["status"] for line in result.stdout.splitlines()}[
        running
    ] == "running"


def test_several_configs_give_the_catalogues_budget_with_dry_run_only(tiny_config, tiny_root, tmp_path):
    """Issue 36, item 4: `bnexp run configs/*.yaml --dry-run` prints each plan and the whole catalogue's runs, run
    time and wall time; without --dry-run several configs are a usage error; nothing is written either way."""
    other = tmp_path / "other.yaml"
    other.write_text(tiny_config.read_text().replace("name: tiny", "name: other"))
    args = ["run", str(tiny_config), str(other), "--data-root", str(tiny_root), "--out", str(tmp_path / "out")]
    result = invoke(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "experiment tiny:" in result.stdout and "experiment other:" in result.stdout
    assert "catalogue: 2 experiments, 4 runs to train" in result.stdout and "wall time with --jobs 1" in result.stdout
    assert invoke(*args).exit_code == 2 and invoke(*args, "--dry-run", "--restart-run", "x").exit_code == 2
    # each config on its own processes: --nproc is for one experiment's runs (a grid over processes stays valid)
    grid = tmp_path / "grid.yaml"
    grid.write_text(tiny_config.read_text().replace("name: tiny", "name: grid") + "grid: {processes: [1, 2]}\n")
    result = invoke(*args[:2], str(grid), *args[3:], "--dry-run", "--nproc", "2")
    assert result.exit_code == 0 and "catalogue: 2 experiments, 6 runs to train" in result.stdout, result.output
    assert not (tmp_path / "out").exists()
