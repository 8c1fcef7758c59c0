from __future__ import annotations

import json

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
    from bnexp import runner

    def boom(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner.Trainer, "fit", boom)
    result = invoke("run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--quiet")
    assert result.exit_code == 1 and "failed runs: lenet5_lr1x_s0, lenet5-bn_lr1x_s0" in result.stdout
