"""Every number in the results sections of README.md and results/README.md is printed by `bnexp report` (the
committed results/REPORT.md), or is a configured value (it appears in a config under configs/): prose cannot
drift from the data."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


def numbers(text: str) -> set[str]:
    """The numbers written in `text`, normalized (no thousands separators, no trailing dot)."""
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets are paths, not results
    text = re.sub(r"`[^`]*`", "", text)  # code: commands and names
    return {m.group(0).replace(",", "").rstrip(".") for m in NUMBER.finditer(text)}


def results_sections(text: str) -> str:
    """The '## Results...' sections of a Markdown text."""
    parts = re.split(r"(?m)^## ", text)
    return "\n".join(p for p in parts if p.startswith("Results"))


def test_every_number_in_the_results_prose_comes_from_the_report_or_a_config():
    report = numbers((REPO / "results" / "REPORT.md").read_text())
    configs = set().union(*(numbers(p.read_text()) for p in (REPO / "configs").glob("*.yaml")))
    prose = results_sections((REPO / "README.md").read_text()) + (REPO / "results" / "README.md").read_text()
    stray = sorted(numbers(prose) - report - configs, key=float)
    assert not stray, f"numbers in the results prose that bnexp report does not print: {stray}"


def test_every_declared_claim_is_measured_or_listed_as_not_measured():
    """A config's claims are decided in the report when its experiment's runs are committed; otherwise README
    names each of them, beside the generated table, with why it is not measured (E5: CIFAR-100 absent)."""
    import yaml

    readme = (REPO / "README.md").read_text().split("<!-- claims:end -->")[1]
    unmeasured = [
        c["id"]
        for p in sorted((REPO / "configs").glob("*.yaml"))
        if not (REPO / "results" / p.stem).is_dir()
        for c in yaml.safe_load(p.read_text()).get("claims") or []
    ]
    assert unmeasured  # E5's
    assert all(f"`{i}`" in readme for i in unmeasured), unmeasured


def test_the_check_catches_a_number_that_is_not_in_the_report():
    report = numbers("| lenet5 | 0.8741 ± 0.0129 (n = 3) |")
    assert numbers("BN reaches 0.8741 after 3 epochs") <= report
    assert numbers("BN reaches 0.8751 (results/x_1.png)") - report == {"0.8751"}
    assert numbers("1,234 steps, `bnexp run --jobs 2`, [fig](a/b_3.png)") == {"1234"}


def test_committed_results_carry_no_machine_path():
    """Issue 22, item 7: records name the dataset by name and content, never by the folder it was read from."""
    machine = re.compile(r"(?<![\w.])/(?:work|root|home|tmp|Users|mnt|opt|var)/")
    found = [
        str(p.relative_to(REPO))
        for p in (REPO / "results").rglob("*")
        if p.suffix in (".md", ".yaml", ".json", ".jsonl") and machine.search(p.read_text(errors="replace"))
    ]
    assert not found, f"machine paths in committed results: {found[:10]}"


def test_committed_results_hold_no_locks_checkpoints_or_weights():
    """Only metrics, summaries, probes, analyses, figures and reports are committed (and synced into results/)."""
    stray = [
        str(p.relative_to(REPO))
        for p in (REPO / "results").rglob("*")
        if p.name.startswith((".lock", ".writers-config")) or p.suffix in (".pt", ".pth") or ".bnexp-tmp-" in p.name
    ]
    assert not stray, f"lock, checkpoint or temp files in results/: {stray[:10]}"


# -- the README's everyday commands work as printed (issue 38) ------------------------------------------------------


def everyday_commands() -> list[list[str]]:
    """The `bnexp ...` commands of README's 'Everyday commands' block, comments dropped, `a; b` split."""
    section = re.split(r"(?m)^## ", (REPO / "README.md").read_text())
    block = next(p for p in section if p.startswith("Everyday commands")).split("```")[1]
    commands = []
    for line in block.splitlines():
        for part in line.split("#")[0].split(";"):
            words = part.split()
            if words[:1] == ["bnexp"]:
                commands.append(words[1:])
    return commands


@pytest.mark.skipif(
    not SHARED_DATA.is_dir() and not os.environ.get("BNEXP_REQUIRE_REAL_DATA"),
    reason="the commands read the official files beside this checkout (CI sets BNEXP_REQUIRE_REAL_DATA)",
)
def test_the_readme_everyday_commands_run_as_printed(tmp_path, monkeypatch):
    """Each command, in a folder laid out as a checkout (configs/, results/, README.md): a `run` that trains for
    seconds (--smoke) runs, the other runs are dry runs, the readers run on what those wrote or on the committed
    results, and commands that take minutes (bench) are parsed only. Nothing is written into this checkout."""
    import shutil

    from typer.main import get_command
    from typer.testing import CliRunner

    from bnexp.cli import app

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.png", "figures"))
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BNEXP_DATA", str(SHARED_DATA))  # as the README's first command sets it
    commands = everyday_commands()
    assert {c[0] for c in commands} >= {"run", "plot", "report", "list", "export", "analyze", "bench"}
    group = get_command(app)
    for words in commands:
        if words[:1] == ["bench"]:  # minutes of benchmarks: its options must parse
            group.commands["bench"].make_context("bench", words[1:])
            continue
        if words[:1] == ["run"] and "--smoke" not in words and "--help" not in words:
            words = [*words, "--dry-run"]
        words = [w.replace("/tmp/", f"{tmp_path}/tmp/") for w in words]  # this test's own /tmp
        result = CliRunner().invoke(app, words)
        assert result.exit_code == 0, f"bnexp {' '.join(words)}: {result.output}"
        assert "Traceback" not in result.output


def test_the_readme_counts_the_committed_runs_it_measured():
    """A count written by hand goes stale: the export cost row names the committed results' run count."""
    (count,) = re.findall(r"committed results folder \((\d+) runs\)", (REPO / "README.md").read_text())
    runs = [p for p in (REPO / "results").glob("*/*/summary.json")]
    assert int(count) == len(runs), "re-measure the export cost row for the committed results as they are now"
