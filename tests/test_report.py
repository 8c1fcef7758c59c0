from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.report import build, verdict
from bnexp.results import find_experiments

from .rundata import write_experiment


def rows_by(report, key):
    return {(c["variant"], c["at"]): c for c in report["experiments"][0][key]}


def test_comparisons_mean_sd_and_verdicts(tmp_path):
    report = build(find_experiments(write_experiment(tmp_path)))
    rows = rows_by(report, "comparisons")
    epoch1 = rows[("lenet5-bn_lr1x", "epoch 1")]
    # seeds 0 and 1: 0.89 and 0.91
    assert epoch1["mean"] == pytest.approx(0.90) and epoch1["sd"] == pytest.approx(0.0141421, abs=1e-6)
    assert epoch1["n"] == 2 and epoch1["difference"] == pytest.approx(0.90 - 0.8859)
    assert epoch1["verdict"] == "reproduced"  # |0.0141| <= 2 sd = 0.028
    assert rows[("lenet5-bn_lr1x", "epoch 2")]["verdict"] == "not reproduced"  # 0.91 vs 0.95
    assert rows[("lenet5-bn_lr1x", "epoch 9")]["verdict"] == "not measured"
    loss = rows[("lenet5_lr5x", "end of run")]
    assert loss["mean"] == pytest.approx(2.31) and loss["verdict"] == "reproduced"


def test_verdict_rule():
    assert verdict(0.90, 0.905, 0.0, 3, "test_acc") == "reproduced"
    assert verdict(0.90, 0.92, 0.0, 3, "test_acc") == "not reproduced"
    assert verdict(0.90, 0.92, 0.011, 3, "test_acc") == "reproduced"
    assert verdict(2.30, 2.40, 0.0, 3, "final_train_loss") == "reproduced"
    assert verdict(2.30, 2.50, 0.0, 3, "final_train_loss") == "not reproduced"
    assert verdict(2.30, float("nan"), float("nan"), 0, "x") == "not measured"


def test_variant_table_and_problem_runs(tmp_path):
    report = build(find_experiments(write_experiment(tmp_path)))
    variants = {v["variant"]: v for v in report["experiments"][0]["variants"]}
    bn = variants["lenet5-bn_lr1x"]
    assert bn["final_test_acc"]["mean"] == pytest.approx(0.92) and bn["n"] == 2
    assert bn["steps_to_threshold"]["0.9"]["reached"] == 2
    assert variants["lenet5_lr5x"]["status"] == {"completed": 1, "not training": 2, "diverged": 1}
    problems = {p["run"]: p for p in report["experiments"][0]["problem_runs"]}
    assert problems["lenet5_lr5x_s1"]["status"] == "diverged" and "step 17" in problems["lenet5_lr5x_s1"]["reason"]
    assert set(problems) == {"lenet5_lr5x_s0", "lenet5_lr5x_s1"}


def test_report_cli_markdown_and_json(tmp_path):
    results = tmp_path / "results"
    write_experiment(results)
    assert CliRunner().invoke(app, ["plot", str(results)]).exit_code == 0
    result = CliRunner().invoke(app, ["report", str(results)])
    assert result.exit_code == 0, result.output
    text = (results / "REPORT.md").read_text()
    assert "| lenet5-bn_lr1x | test_acc | epoch 1 | 0.8859 | 0.9000 ± 0.0141 (n=2) | +0.0141 | **reproduced** |" in text
    assert "](synthetic/figures/convergence.png)" in text and "bnexp" in text.splitlines()[2]
    assert "`lenet5_lr5x_s1`: diverged, diverged at step 17" in text
    js = CliRunner().invoke(app, ["report", str(results), "--json"])
    assert json.loads(js.stdout)["experiments"][0]["name"] == "synthetic"


def test_list_cli(tmp_path):
    write_experiment(tmp_path)
    result = CliRunner().invoke(app, ["list", str(tmp_path)])
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 + 8 + 1  # header, runs, footnote
    assert "lenet5-bn_lr1x_s0" in result.stdout and "diverged*" in result.stdout
    js = CliRunner().invoke(app, ["list", str(tmp_path), "--json"])
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert {r["run"] for r in rows} >= {"lenet5_lr1x_s0"} and rows[0]["experiment"] == "synthetic"
