from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.report import build, to_markdown, verdict
from bnexp.results import find_experiments

from .rundata import write_experiment


def rows_by(report, key):
    return {(c["variant"], c["at"]): c for c in report["experiments"][0][key]}


def test_comparisons_judge_the_article_run_by_our_prediction_interval(tmp_path):
    report = build(find_experiments(write_experiment(tmp_path)))
    rows = rows_by(report, "comparisons")
    epoch1 = rows[("lenet5-bn_lr1x", "epoch 1")]
    # seeds 0 and 1: 0.89 and 0.91; PI half-width t(0.975, 1) * sd * sqrt(1 + 1/2) = 12.706 * 0.014142 * 1.2247
    assert epoch1["mean"] == pytest.approx(0.90) and epoch1["sd"] == pytest.approx(0.0141421, abs=1e-6)
    assert epoch1["n"] == 2 and epoch1["difference"] == pytest.approx(0.90 - 0.8859)
    assert epoch1["verdict"] == "supported"  # 0.8859 inside 0.90 ± 0.2201
    # with 1 df the predictive t is Cauchy: p = 1 - (2/pi) atan(|t|), t = 0.0141 / (0.014142 * 1.2247)
    t = 0.0141 / (0.0141421 * 1.5**0.5)
    assert epoch1["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-5)  # sd rounded above
    assert rows[("lenet5-bn_lr1x", "epoch 2")]["verdict"] == "contradicted"  # 0.5 outside 0.91 ± 0.2201
    assert rows[("lenet5-bn_lr1x", "epoch 9")]["verdict"] == "not measured"
    loss = rows[("lenet5_lr5x", "end of run")]  # both runs 2.31: no spread, and the article's 2.3026 differs
    assert loss["mean"] == pytest.approx(2.31) and loss["verdict"] == "contradicted"


def test_verdict_rule():
    assert verdict(0.90, [0.90, 0.91, 0.89])[0] == "supported"
    assert verdict(0.95, [0.90, 0.91, 0.89])[0] == "contradicted"  # PI 0.90 ± 4.303 * 0.01 * 1.1547 = ± 0.0497
    assert verdict(0.949, [0.90, 0.91, 0.89])[0] == "supported"
    assert verdict(0.90, [0.91]) == ("undecided at n = 1", None)
    assert verdict(0.90, []) == ("not measured", None)


def test_variant_table_and_problem_runs(tmp_path):
    report = build(find_experiments(write_experiment(tmp_path)))
    variants = {v["variant"]: v for v in report["experiments"][0]["variants"]}
    bn = variants["lenet5-bn_lr1x"]
    assert bn["final_test_acc"]["mean"] == pytest.approx(0.92) and bn["n"] == 2
    assert bn["steps_to_threshold"]["0.9"]["reached"] == 2
    assert variants["lenet5_lr5x"]["status"] == {"completed": 1, "never left chance": 1, "diverged": 1}
    assert variants["lenet5_lr5x"]["outcomes"] == {"never_left_chance": 1, "diverged": 1}
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
    row = "| lenet5-bn_lr1x | test_acc | epoch 1 | 0.8859 | 0.9000 ± 0.0141 (n=2) | +0.0141 | **supported** (p = 0.57)"
    assert row + " |" in text
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
    assert "lenet5-bn_lr1x_s0" in result.stdout and "completed*" in result.stdout
    js = CliRunner().invoke(app, ["list", str(tmp_path), "--json"])
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert {r["run"] for r in rows} >= {"lenet5_lr1x_s0"} and rows[0]["experiment"] == "synthetic"


def test_series_comparisons_use_the_same_smoothing_for_both_curves(tmp_path):
    """The author's per-step history against our logged window means: first step below each threshold on
    20-step windows, last-epoch loss, and how many of our seeds share the article's outcome."""
    exp_dir = write_experiment(tmp_path)
    author = [2.3] * 40 + [1.5] * 20 + [2.3] * 100  # left chance at step 60, then fell back
    refs = {
        "lenet5_lr1x": [
            {"file": "r.json", "key": "h", "quantity": "train_loss_per_step", "values": author, "steps_per_epoch": 10}
        ]
    }
    (exp_dir / "references.json").write_text(json.dumps(refs))
    rows = {r["quantity"]: r for r in build(find_experiments(tmp_path))["experiments"][0]["series_comparisons"]}
    assert rows["steps_to_loss_below_2"]["reference"] == 60
    # ours: 2.3 exp(-step/10) + 0.1 per 2-step window -> the first 20-step window mean below 2 ends at step 20
    assert rows["steps_to_loss_below_2"]["mean"] == 20 and rows["steps_to_loss_below_2"]["n"] == 2
    assert rows["steps_to_loss_below_2"]["verdict"] == "contradicted"  # 20 in both seeds: no spread, 60 outside
    assert rows["steps_to_loss_below_1"]["reference"] is None
    assert rows["steps_to_loss_below_1"]["verdict"].startswith("contradicted (2/2 reached it")
    assert rows["steps_to_loss_below_0.5"]["verdict"] == "supported"  # neither curve gets there
    assert rows["final_loss"]["reference"] == pytest.approx(2.3)
    assert rows["outcome"]["reference"] == "fell_back" and rows["outcome"]["verdict"] == "0 of 2 seeds"
    text = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.md")])
    assert (
        text.exit_code == 0
        and "| lenet5_lr1x | outcome | fell_back | 2 trained | **0 of 2 seeds** |" in (tmp_path / "r.md").read_text()
    )


@pytest.mark.parametrize("target", ["missing/deep/report.md", "file_in_the_way/report.md", "a_folder"])
def test_report_out_problems_exit_2(tmp_path, target):
    """Issue 15, item 13: a bad --out is a clean error, for report and plot."""
    write_experiment(tmp_path / "results")
    (tmp_path / "file_in_the_way").write_text("")
    (tmp_path / "a_folder").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results"), "--out", str(tmp_path / target)])
    if target.startswith("missing"):
        assert result.exit_code == 0 and (tmp_path / target).is_file()  # parents are created
    else:
        assert result.exit_code == 2 and "--out" in result.output and "Traceback" not in result.output
    plot = CliRunner().invoke(app, ["plot", str(tmp_path / "results"), "--out", str(tmp_path / "file_in_the_way")])
    assert plot.exit_code == 2 and "is a file" in plot.output


def test_report_out_where_nothing_can_be_written_exits_2(tmp_path):
    """/proc refuses new files even to root, so this holds for any user."""
    write_experiment(tmp_path / "results")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results"), "--out", "/proc/bnexp-test/r.md"])
    assert result.exit_code == 2 and "cannot create" in result.output and "Traceback" not in result.output


def test_the_batch_size_table_counts_mixed_cells_per_outcome_and_gives_no_sd_for_one_run(tmp_path):
    """Batch 2 holds one run that trained and one that never left chance: no mean over them, each outcome on its
    own; batch 8 holds one run: its accuracy without a '± 0.0000'."""
    from bnexp.report_sections import SECTIONS

    exp = find_experiments(write_experiment(tmp_path))[0]
    plain = [r for r in exp.runs if r.config["model"]["norm"] == "none"]  # lr x1 trains, lr x5 never leaves chance
    for r in exp.runs:
        r.config["grid"] = {"batch_size": 8}
    for r in plain:
        r.config["grid"] = {"batch_size": 2 if r.config["seed"] == 0 else 8 if r.config["lr_multiplier"] == 1 else 16}
    section = next(s for s in SECTIONS if s.name == "batch_size").build(exp)
    row = next(line for line in section["markdown"] if line.startswith("| lenet5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # rundata's accuracies at epoch 3, the outcomes in the runs' order (as in the variant table)
    assert cells[1] == "trained: 0.8800 (n=1); never left chance: 0.8700 (n=1)"
    assert cells[2] == "0.9000 (n=1)" and "±" not in cells[2]
    mixed = section["data"]["lenet5"]["2"]["acc"]
    assert "mean" not in mixed and set(mixed["by_outcome"]) == {"never_left_chance", "trained"}


def test_seeds_added_after_a_look_are_listed_with_what_the_looks_cost(tmp_path, capsys):
    """An experiment recorded with interim_looks [2] and 4 seeds: one look halfway, 9.3 % instead of 5 % for paired
    t tests (simulated); the spending boundary's nominal levels bring it back to about 5 %."""
    import yaml

    from bnexp.report import to_markdown
    from bnexp.store import EXPERIMENT_FILE

    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    claim = {
        "id": "c",
        "claim": "BN is better",
        "source": "a5",
        "quote": "q",
        "kind": "article",
        "registered": "2026-12-01",
        "quantity": "final_test_acc",
        "group": "lenet5-bn_lr1x",
        "expect": "greater",
        "versus": "lenet5_lr1x",
    }
    meta["config"].update(seeds=[0, 1, 2, 3], interim_looks=[2], claims=[claim])
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    report = build(find_experiments(tmp_path))
    assert report["experiments"][0]["interim_looks"] == {
        "looks": [2],
        "seeds": 4,
        "error": pytest.approx(0.093, abs=0.002),
        "levels": pytest.approx([0.00557, 0.0478], abs=1e-4),
        "error_with_boundary": pytest.approx(0.053, abs=0.002),
    }
    assert "Seeds at each look: synthetic: 2, then 4 (9.3 %; boundary 0.0056 / 0.048: 5.3 %)." in to_markdown(
        report, tmp_path
    )
    # a record whose looks do not fit its seeds is left out, with a warning, never trusted
    meta["config"]["interim_looks"] = [4]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert build(find_experiments(tmp_path))["experiments"][0]["interim_looks"] is None
    assert "interim_looks [4]" in capsys.readouterr().err
    # issue 37, item 19: a foreign record's looks are bounded, so what they cost to compute is too
    meta["config"].update(seeds=list(range(60)), interim_looks=list(range(1, 51)))
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert build(find_experiments(tmp_path))["experiments"][0]["interim_looks"] is None


def test_runs_made_under_other_conditions_are_told_apart(tmp_path):
    """Issue 38, item 2: bitwise reproduction needs the same torch, threads and CPU kernels; the report groups the
    runs by them, and says when an experiment's runs were made under more than one set."""
    from bnexp.report import conditions_text
    from bnexp.store import RunDir

    exp_dir = write_experiment(tmp_path)
    report = build(find_experiments(exp_dir))
    (groups,) = [e["conditions"] for e in report["experiments"]]
    assert groups == [
        {
            "torch": "2.x",
            "threads": "None",
            "device": "cpu",
            "gpu": None,
            "cpu": None,
            "cpu_capability": None,
            "runs": 8,
            "seeds": [0, 1],
        }
    ]
    assert (
        conditions_text(groups) == "Made under one set of conditions: torch 2.x, torch threads not recorded, on "
        "CPU (not recorded): 8 runs (seeds 0, 1)."
    )
    for run in ("lenet5_lr1x_s1", "lenet5-bn_lr1x_s1"):  # seed 1 again, elsewhere
        summary = RunDir(exp_dir / run).summary()
        summary["device"] |= {"torch_threads": 1, "cpu_capability": "AVX512", "cpu": "AMD EPYC"}
        summary["segments"] = [{"from_step": 0, "torch_threads": 1, "processes": 1}]
        RunDir(exp_dir / run).write_summary(summary)
    text = conditions_text(build(find_experiments(exp_dir))["experiments"][0]["conditions"])
    assert text.startswith("Made under 2 sets of conditions (a run repeats bitwise only under its own)")
    assert "torch 2.x, 1 torch thread, on CPU (AVX512, AMD EPYC): 2 runs (seed 1)" in text
    assert "6 runs (seeds 0, 1)" in text
    summary = RunDir(exp_dir / "lenet5_lr1x_s0").summary()  # a GPU run recorded before CUDA's version was
    summary["device"] = {"type": "cuda", "name": "NVIDIA H100", "torch_threads": 1}
    RunDir(exp_dir / "lenet5_lr1x_s0").write_summary(summary)
    text = conditions_text(build(find_experiments(exp_dir))["experiments"][0]["conditions"])
    assert "1 torch thread, on cuda (NVIDIA H100): 1 run (seed 0)" in text
    markdown = tmp_path / "REPORT.md"
    assert CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(markdown)]).exit_code == 0
    assert "Made under 3 sets of conditions" in markdown.read_text()


def test_files_are_utf8_whatever_the_locale(tmp_path):
    """Issue 37, item 21: under LC_ALL=C without UTF-8 mode, reading and writing records must not depend on the
    locale's encoding (the committed results hold '±' and the articles' Chinese)."""
    import os
    import subprocess
    import sys

    import yaml

    from bnexp.store import EXPERIMENT_FILE

    exp_dir = write_experiment(tmp_path / "results")
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    meta["config"]["description"] = "加入BN后的模型 (read back, not only written)"
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    out = tmp_path / "REPORT.md"
    done = subprocess.run(
        [sys.executable, "-m", "bnexp", "report", str(tmp_path / "results"), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "±" in out.read_text(encoding="utf-8") and "加入BN后的模型" in out.read_text(encoding="utf-8")


def test_an_unfinished_run_counts_in_its_status_only(tmp_path):
    """Issue 38, item 5: an interrupted run is shown as such ('1 interrupted'), but counts in no outcome, no
    'left chance (step)', no threshold count and no rate of runs that end near chance."""
    from bnexp.store import RunDir

    exp_dir = write_experiment(tmp_path)
    for name in ("lenet5-bn_lr1x_s0", "lenet5_lr5x_s0"):  # one that trained, one that never left chance
        run = RunDir(exp_dir / name)
        run.write_summary({**run.summary(), "status": "interrupted"})
    report = build(find_experiments(exp_dir))
    variants = {v["variant"]: v for v in report["experiments"][0]["variants"]}
    bn = variants["lenet5-bn_lr1x"]
    assert bn["status"] == {"interrupted": 1, "completed": 1} and bn["outcomes"] == {"trained": 1}
    assert bn["left_chance_step"]["n"] == 1 and bn["steps_to_threshold"]["0.9"] == {
        "mean_step": 20,
        "sd": 0.0,
        "reached": 1,
        "of": 1,
    }
    stuck = variants["lenet5_lr5x"]
    assert stuck["status"] == {"interrupted": 1, "diverged": 1} and stuck["outcomes"] == {"diverged": 1}
    rates = {(d["model"], d["lr"]): d for d in report["experiments"][0]["sections"]["outcomes_by_lr"]["data"]}
    assert rates[("lenet5", 0.05)]["n"] == 1 and rates[("lenet5", 0.05)]["near_chance_at_end"] == 0
    assert rows_by(report, "comparisons")[("lenet5-bn_lr1x", "epoch 1")]["n"] == 1  # the article's values too
    lines = to_markdown(report, tmp_path).splitlines()
    row = next(line for line in lines if line.startswith("| lenet5-bn_lr1x | 1 interrupted, 1 completed |"))
    assert "(n=1)" in row and "0.9: 20 (1/1)" in row


def test_report_links_the_claims_figure_where_plot_wrote_one(tmp_path):
    from bnexp.report import build, to_markdown
    from bnexp.results import find_experiments

    from .rundata import write_experiment

    write_experiment(tmp_path)
    data = build(find_experiments(tmp_path))
    assert "claims.png" not in to_markdown(data, tmp_path)
    (tmp_path / "claims.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert "[claims.png](claims.png)" in to_markdown(data, tmp_path)
