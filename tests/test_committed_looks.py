"""Every look at a committed experiment's claims is on the record: each number of seeds (2 or more, where a
verdict could be decided) at which an earlier committed results/REPORT.md printed an experiment's claims, below the
number it has now, is one of that experiment's `interim_looks`. A look at one seed decides nothing and spends no
error rate. The history is git's: the test reads every committed version of REPORT.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REPORT = "results/REPORT.md"
CLAIM_ROW = re.compile(r"\(`([A-Za-z0-9][A-Za-z0-9._-]*)`[,)]")  # "(`id`)" or, with its kind or marker, "(`id`, ..."


def claim_experiments() -> dict[str, str]:
    """claim id -> the committed experiment that records it."""
    out = {}
    for meta in sorted((REPO / "results").glob("*/experiment.yaml")):
        for claim in yaml.safe_load(meta.read_text())["config"].get("claims") or []:
            out[claim["id"]] = meta.parent.name
    return out


def seeds_printed(report: str, experiment_of: dict[str, str]) -> dict[str, int]:
    """experiment -> the largest n a report's claims table printed for its claims (the table's last whole-number
    cell in a claim's row is its n)."""
    printed: dict[str, int] = {}
    for line in report.splitlines():
        match = CLAIM_ROW.search(line)
        if not match or match.group(1) not in experiment_of or not line.startswith("|"):
            continue
        counts = [int(cell) for cell in (c.strip() for c in line.split("|")) if cell.isdigit()]
        if counts:
            exp = experiment_of[match.group(1)]
            printed[exp] = max(printed.get(exp, 0), counts[-1])
    return printed


def looks_in_history() -> dict[str, list[int]]:
    """experiment -> every n its claims were printed at in the committed REPORT.md versions, oldest first."""
    commits = subprocess.run(
        ["git", "log", "--reverse", "--format=%H", "--", REPORT], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert commits, "no committed REPORT.md in this checkout's git history"
    experiment_of = claim_experiments()
    history: dict[str, list[int]] = {}
    for commit in commits:
        report = subprocess.run(
            ["git", "show", f"{commit}:{REPORT}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        for exp, n in seeds_printed(report, experiment_of).items():
            if n not in history.setdefault(exp, []):
                history[exp].append(n)
    return history


def test_every_earlier_look_at_a_committed_experiment_is_among_its_interim_looks():
    missing = {}
    for exp, ns in looks_in_history().items():
        config = yaml.safe_load((REPO / "results" / exp / "experiment.yaml").read_text())["config"]
        final = max(len(s) for s in [config["seeds"], *(m.get("seeds") or [] for m in config["models"])])
        looked = sorted({n for n in ns if 2 <= n < final})
        if not set(looked) <= set(config.get("interim_looks") or []):
            missing[exp] = (looked, config.get("interim_looks"))
    assert not missing, f"looks printed in a committed REPORT.md but not recorded (looked at, recorded): {missing}"


def test_a_report_row_gives_its_experiment_the_n_it_printed():
    row = "| With BN (`a-claim`) | a5 | q: a > b | 0.9 (n = 3) vs 0.8 (n = 3) | +0.1 [0.0, 0.2] | 3 | **supported** |"
    other = "| x (`unknown-claim`) | s | q | m | e | 7 | **supported** |"
    marked = (
        "| y (`b-claim`, diagnostic, *exploratory*, registered 2026-12-01) | s | q | m | e | 5 | 0.2 | **supported** |"
    )
    assert seeds_printed(f"{row}\n{other}\n{marked}", {"a-claim": "exp", "b-claim": "other"}) == {"exp": 3, "other": 5}
