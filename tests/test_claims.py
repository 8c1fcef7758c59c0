"""Claims in configs: validation with file:line errors, measurement on a run store, verdicts and bimodal cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from bnexp.claims import evaluate
from bnexp.claims.markdown import effect_text
from bnexp.cli import app
from bnexp.config import ClaimConfig, ConfigError
from bnexp.results import find_experiments
from bnexp.store import EXPERIMENT_FILE
from bnexp.validate import load as load_config

from .conftest import ARTICLES, REPO, TINY_CONFIG
from .rundata import write_experiment

CLAIM = """\
claims:
  - id: bn-better
    claim: BN is better
    source: "a5 sec. 2.2"
    quote: "加入BN"
    kind: article
    registered: 2026-12-01
    quantity: final_test_acc
    group: lenet5-bn_lr1x
    expect: greater
    versus: lenet5_lr1x
"""


def load_with(tmp_path, claims: str, overrides=()):
    path = tmp_path / "c.yaml"
    path.write_text(TINY_CONFIG + claims)
    return load_config(path, overrides)


def test_a_valid_claim_loads_and_does_not_change_what_runs_compute(tmp_path):
    cfg = load_with(tmp_path, CLAIM)
    assert cfg.claims[0].versus == "lenet5_lr1x" and cfg.claims[0].expect == "greater"
    # a smoke profile or --set that leaves a group without runs is fine: the report says not measured
    assert load_with(tmp_path, CLAIM, ["models=[{name: lenet5, norm: none}]"]).claims


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (("group: lenet5-bn_lr1x", "group: lenet5-bm_lr1x"), "claims[0].group", "did you mean 'lenet5-bn_lr1x'"),
        (("expect: greater", "expect: bigger"), "claims[0].expect", "allowed: greater, less, equivalent, consistent"),
        (("expect: greater", "expect: equivalent"), "claims[0].margin", "needs versus"),
        (("    versus: lenet5_lr1x\n", "    versus: lenet5_lr1x\n    value: 0.9\n"), "claims[0].value", "exactly one"),
        (("quantity: final_test_acc", "quantity: test_acc_at_epoch"), "claims[0].at", "needs at: NUMBER"),
        (("quantity: final_test_acc", "quantity: eval_mode_acc\n    at: z_mode"), "claims[0].at", "MODE one of"),
        (("quantity: final_test_acc", "quantity: near_chance_at_end\n    margin: 0.1"), "claims[0].margin", "versus"),
        (("quantity: final_test_acc", "quantity: accuracy"), "claims[0].quantity", "allowed: final_test_acc"),
        (("claim: BN is better", 'claim: "BN is\\nbetter"'), "claims[0].claim", "one line"),  # issue 37, item 16
        (("claim: BN is better", "claim: BN <!-- claims:end --> is better"), "claims[0].claim", "'<!--'"),
        (('source: "a5 sec. 2.2"', 'source: "a5 --> sec. 2.2"'), "claims[0].source", "'-->'"),
        (("    kind: article\n", ""), "claims[0].kind", "missing"),  # every claim says what kind it is
        (("kind: article", "kind: paper"), "claims[0].kind", "allowed: article, literature, diagnostic"),
        (('    quote: "加入BN"\n', ""), "claims[0].quote", "quotes the article's own words"),
        (('source: "a5 sec. 2.2"', 'source: "Ioffe & Szegedy 2015"'), "claims[0].source", "names its article first"),
        (("kind: article", "kind: identity"), "claims[0].checked_by", "names the unit test"),
        (("kind: article", "kind: article\n    checked_by: tests/test_nn.py::test_x"), "claims[0].checked_by", "only"),
        (("registered: 2026-12-01", 'registered: "1 Dec 2026"'), "claims[0].registered", "YYYY-MM-DD"),
        (("    registered: 2026-12-01\n", ""), "claims[0].registered", "missing"),
        (("expect: greater", "expect: equivalent\n    margin: 0.01"), "claims[0].margin_why", "why it is that wide"),
    ],
)
def test_bad_claims_name_file_line_key_and_what_is_allowed(tmp_path, edit, key, words):
    with pytest.raises(ConfigError) as e:
        load_with(tmp_path, CLAIM.replace(*edit))
    assert e.value.key == key and words in e.value.message
    assert e.value.where.startswith(str(tmp_path / "c.yaml") + ":")  # file:line


def test_duplicate_ids_and_consistent_without_a_value_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="ids must be unique"):
        load_with(tmp_path, CLAIM + CLAIM.removeprefix("claims:\n"))
    with pytest.raises(ConfigError, match="needs the article's value"):
        load_with(tmp_path, CLAIM.replace("expect: greater", "expect: consistent"))


def test_every_committed_record_holds_its_configs_claims():
    """Claims change no run, so a config's claims (and runs_began, which dates them) are recorded into its
    committed experiment.yaml without training (scripts/record_claims.py): the report decides the claims the config
    declares."""
    for record in sorted((REPO / "results").glob(f"*/{EXPERIMENT_FILE}")):
        recorded = yaml.safe_load(record.read_text())["config"]
        config = load_config(REPO / "configs" / f"{record.parent.name}.yaml")
        assert recorded["claims"] == [c.model_dump() for c in config.claims], record.parent.name
        assert recorded.get("runs_began") == config.runs_began, record.parent.name


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.skipif(not ARTICLES.is_dir(), reason="the articles (../shared/articles) are not beside this checkout")
def test_every_article_claims_quote_occurs_in_its_article():
    """An article claim quotes its article's own words, copied exactly (only whitespace may differ); the source
    names the article first (a1..a5). An identity that quotes an article is held to the same."""
    articles = {p.name[:2]: _words(p.read_text()) for p in ARTICLES.glob("a[1-5]-*.txt")}
    assert sorted(articles) == ["a1", "a2", "a3", "a4", "a5"]
    quoted = 0
    for config in sorted((REPO / "configs").glob("*.yaml")):
        for c in load_config(config).claims:
            if c.quote is not None:
                assert _words(c.quote) in articles[c.source[:2]], (config.name, c.id)
                quoted += 1
    assert quoted >= 49  # every article claim at least


def test_a_claim_registered_after_its_experiments_runs_began_is_exploratory(tmp_path):
    """The registration rule on a hand-made case: the synthetic runs all started on 2026-11-21 (their summaries),
    and claims registered the day before, the same day and the day after; then the config says earlier runs,
    replaced since, began on 2026-11-19 (runs_began), which makes the first two exploratory as well."""
    from bnexp.claims import claim_rows
    from bnexp.claims.decide import exploratory

    assert not exploratory("2026-11-20", "2026-11-21") and not exploratory("2026-11-21", "2026-11-21")
    assert exploratory("2026-11-22", "2026-11-21") and not exploratory("2026-11-22", None)
    exp_dir = write_experiment(tmp_path)
    for summary in exp_dir.glob("*/summary.json"):
        record = json.loads(summary.read_text())
        summary.write_text(json.dumps({**record, "started": f"2026-11-21T{record['seed']:02d}:00:00+00:00"}))
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    days = {"before": "2026-11-20", "same-day": "2026-11-21", "after": "2026-11-22"}
    meta["config"]["claims"] = [claim(id=i, registered=d, versus="lenet5_lr1x").model_dump() for i, d in days.items()]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    rows = claim_rows(find_experiments(tmp_path))
    assert [(r["id"], r["exploratory"]) for r in rows] == [("before", False), ("same-day", False), ("after", True)]
    meta["config"]["runs_began"] = "2026-11-19"
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert all(r["exploratory"] for r in claim_rows(find_experiments(tmp_path)))


def test_every_identity_names_a_unit_test_that_exists():
    """An identity holds by construction: a unit test checks it exactly, and the claim names that test."""
    identities = [c for config in sorted((REPO / "configs").glob("*.yaml")) for c in load_config(config).claims]
    identities = [c for c in identities if c.kind == "identity"]
    assert len(identities) >= 5
    for c in identities:
        path, test = c.checked_by.split("::")
        assert re.search(rf"^def {test}\(", (REPO / path).read_text(), re.MULTILINE), c.id


def test_record_claims_replaces_only_the_recorded_claims(tmp_path):
    exp_dir = write_experiment(tmp_path / "results")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / f"{exp_dir.name}.yaml").write_text(
        TINY_CONFIG.replace("name: tiny", f"name: {exp_dir.name}") + CLAIM
    )
    before = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    script = REPO / "scripts" / "record_claims.py"
    args = [sys.executable, str(script), str(tmp_path / "results"), str(tmp_path / "configs")]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert done.stdout == f"{exp_dir.name}: claims recorded\n"
    after = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    assert [c["id"] for c in after["config"].pop("claims")] == ["bn-better"]
    before["config"].pop("claims", None)
    assert after == before


def test_claims_are_not_grid_keys(tmp_path):
    with pytest.raises(ConfigError, match="cannot be a grid key"):
        load_with(tmp_path, "grid: {claims: [[]]}\n")


def claim(**kw) -> ClaimConfig:
    base = {
        "id": "c",
        "claim": "c",
        "source": "a5",
        "quote": "q",
        "kind": "article",
        "registered": "2026-12-01",
        "quantity": "final_test_acc",
        "group": "lenet5-bn_lr1x",
        "expect": "greater",
    }
    why = {"margin_why": "for the test"} if "margin" in kw else {}
    return ClaimConfig(**{**base, **why, **kw})


@pytest.fixture
def experiment(tmp_path):
    return find_experiments(write_experiment(tmp_path))[0]


def test_verdicts_supported_contradicted_undecided_and_not_measured(experiment):
    # final accuracies: lenet5-bn_lr1x 0.91 / 0.93, lenet5_lr1x 0.88 / 0.90 (seeds 0 / 1): paired differences 0.03
    supported = evaluate(claim(versus="lenet5_lr1x"), experiment)
    assert supported["verdict"] == "supported" and supported["effect"] == pytest.approx(0.03)
    assert "paired t, 2 pairs" in supported["method"]
    contradicted = evaluate(claim(versus="lenet5_lr1x", expect="less"), experiment)
    assert contradicted["verdict"] == "contradicted"
    # against a value: mean 0.92, 95 % CI 0.92 ± 12.706 * 0.014142 / sqrt(2) = ± 0.127
    undecided = evaluate(claim(value=0.915), experiment)
    assert undecided["interval"] == pytest.approx([0.005 - 0.12706, 0.005 + 0.12706], abs=1e-4)
    assert undecided["verdict"].startswith("undecided at n = 2 (≈ ") and "would decide" in undecided["verdict"]
    assert evaluate(claim(group="lenet5-gn_lr1x", value=0.5), experiment)["verdict"] == "not measured"


def test_equivalence_and_consistency_claims(experiment):
    same = evaluate(claim(versus="lenet5-bn_lr1x", expect="equivalent", margin=0.01), experiment)
    assert same["verdict"] == "supported" and same["interval90"] == pytest.approx([0.0, 0.0])
    # the table prints the 90 % interval the verdict is decided by beside the 95 % one
    row = {**same, "effect": -0.0029, "interval": [-0.0125, 0.0066], "interval90": [-0.0098, 0.0039]}
    assert effect_text(row) == "-0.0029 [-0.0125, +0.0066]; 90 %: [-0.0098, +0.0039]"
    far = evaluate(claim(versus="lenet5_lr1x", expect="equivalent", margin=0.01), experiment)
    assert far["verdict"] == "contradicted"  # differences of exactly 0.03, outside ±0.01
    # the article's epoch-1 and -2 runs against ours (0.89/0.91 and 0.90/0.92); Bonferroni 97.5 % intervals
    ok = evaluate(claim(quantity="test_acc_at_epoch", expect="consistent", value={1.0: 0.88, 2.0: 0.89}), experiment)
    assert ok["verdict"] == "supported" and ok["points"] == 2 and ok["inside"] == 2
    assert any("below the article's at all 2 points" not in n for n in ok["notes"] + ["x"])
    assert any("our mean is above the article's at all 2 points" in n for n in ok["notes"])
    off = evaluate(claim(quantity="test_acc_at_epoch", expect="consistent", value={1.0: 0.3}), experiment)
    assert off["verdict"] == "contradicted" and off["p_value"] < 0.05


def test_mixed_outcomes_are_counted_not_averaged(experiment):
    """lenet5_lr5x: seed 0 never left chance, seed 1 diverged: no mean over them."""
    row = evaluate(claim(group="lenet5_lr5x", versus="lenet5_lr1x"), experiment)
    assert any("mixed outcomes (1 never left chance, 1 diverged)" in n for n in row["notes"])
    # no run of lr5x trained, so there is no accuracy to average: the share of runs that trained decides
    assert row["measured"] == "trained 0/2 vs 2/2" and row["method"].startswith("share of runs that trained")
    assert row["effect"] == -1.0 and row["verdict"] == "contradicted"  # Newcombe: [-1, -0.07], below 0
    assert evaluate(claim(group="lenet5_lr5x", versus="lenet5_lr1x", expect="less"), experiment)["verdict"] == (
        "supported"
    )
    # a quantity that is not an accuracy has no such order: every run of the group is kept, and ranked
    loss = evaluate(claim(group="lenet5_lr5x", versus="lenet5_lr1x", quantity="final_train_loss"), experiment)
    assert loss["method"].startswith("Mann-Whitney") and loss["p_value"] == pytest.approx(1 / 6)
    share = evaluate(claim(group="lenet5_lr5x", quantity="near_chance_at_end", versus="lenet5_lr1x"), experiment)
    assert share["measured"] == "1/2 vs 0/2" and share["method"].startswith("Newcombe")
    assert share["verdict"].startswith("undecided at n = 2")


def test_report_opens_with_the_claims_table(tmp_path):
    exp_dir = write_experiment(tmp_path / "results")
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"]["claims"] = [
        {
            "id": "bn-better",
            "claim": "BN is better",
            "source": "a5",
            "quote": "q",
            "kind": "article",
            "registered": "2026-12-01",
            "quantity": "final_test_acc",
            "group": "lenet5-bn_lr1x",
            "expect": "greater",
            "versus": "lenet5_lr1x",
            "figure": "convergence",
        }
    ]
    identity = {**meta["config"]["claims"][0], "id": "same-bn", "claim": "BN is BN", "kind": "identity"}
    identity |= {"checked_by": "tests/test_nn.py::test_gradcheck", "expect": "equivalent", "margin": 0.01}
    identity |= {"margin_why": "for the test"}
    meta["config"]["claims"].append({**identity, "versus": "lenet5-bn_lr1x"})
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert CliRunner().invoke(app, ["plot", str(tmp_path / "results")]).exit_code == 0
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "results" / "REPORT.md").read_text()
    head = text.split("## Per-experiment tables")[0]
    assert "## Claims at a glance" in head and "(`bn-better`)" in head and "**supported**" in head
    assert "](synthetic/figures/convergence.png)" in head
    assert "In the articles' own words:\n\n- `bn-better` (a5): q\n- `same-bn` (a5): q\n" in head
    table, identities = head.split("### Identities (checked as unit tests, not counted)")
    assert "same-bn" not in table.split("In the articles' own words:")[0]  # an identity is no row of the table
    assert "- BN is BN (`same-bn`, synthetic): checked exactly by `tests/test_nn.py::test_gradcheck`" in identities
    assert "| synthetic | 1 | 1 | – | – | – |" in table  # the article's claim only


def test_a_damaged_claims_record_is_left_out_with_a_warning(tmp_path, capsys):
    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"]["claims"] = [{"id": "x", "quantity": 5}]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert find_experiments(tmp_path)[0].claims == []
    assert "claims are left out" in capsys.readouterr().err


@pytest.mark.parametrize("broken", [{"expect": "greater"}, {"expect": "equivalent", "versus": "lenet5_lr1x"}])
def test_a_recorded_claim_that_breaks_a_claim_rule_is_left_out_not_a_traceback(tmp_path, capsys, broken):
    """Issue 37, item 16: greater with neither versus nor value, or an equivalence without a margin, from someone
    else's experiment.yaml: the claims are left out with a warning, and the report is written."""
    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"]["claims"] = [
        {
            "id": "x",
            "claim": "c",
            "source": "a5",
            "quote": "q",
            "kind": "article",
            "registered": "2026-12-01",
            "quantity": "final_test_acc",
            "group": "lenet5-bn_lr1x",
            **broken,
        }
    ]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert find_experiments(tmp_path)[0].claims == []
    assert "claims are left out" in capsys.readouterr().err
    assert CliRunner().invoke(app, ["report", str(tmp_path)]).exit_code == 0


def test_groups_with_mixed_outcomes_are_compared_run_by_run_by_rank(experiment):
    """A group of 2 runs that trained (0.88, 0.90), 1 that never left chance and 1 that diverged (no accuracy,
    ranked below every run) against lenet5-bn_lr1x (0.91, 0.93): no mean over the mixed group; the rank test
    sees a complete separation, p = 1 / C(6, 2) = 1/15, not below 0.025 at 2 runs against 4."""
    experiment.variants["mixed"] = experiment.variants["lenet5_lr1x"] + experiment.variants["lenet5_lr5x"]
    row = evaluate(claim(versus="mixed"), experiment)
    assert row["method"].startswith("Mann-Whitney") and "every run ranked" in row["method"]
    assert row["p_value"] == pytest.approx(1 / 15) and row["effect"] is None
    assert row["verdict"] == "undecided at n = 2 (≈ 4 would decide)"
    assert "2 trained, 1 never left chance, 1 diverged" in row["measured"]
    assert any(n.startswith("mixed: mixed outcomes (") and n.endswith("; every run ranked") for n in row["notes"])
    other_way = evaluate(claim(versus="mixed", expect="less"), experiment)
    assert other_way["verdict"] == "undecided at n = 2 (the ranks point the other way)"
    assert other_way["p_value"] == pytest.approx(1.0) and other_way["p_opposite"] == pytest.approx(1 / 15)
    # "about as well as" has no rank form: compared within the runs that trained, as before
    equivalent = evaluate(claim(versus="mixed", expect="equivalent", margin=0.1), experiment)
    assert any(n.endswith("compared within the runs that trained") for n in equivalent["notes"])


def test_a_mixed_group_without_a_run_that_trained_keeps_every_run_for_other_quantities(experiment):
    """E3 at batch 1: one net never left chance, the other fell back; their feature maps are still measured.
    lenet5_lr5x (never left chance, diverged) has spread ratio 2 in both runs, lenet5-bn_lr1x 1: a complete
    separation of 2 runs against 2, p = 1/6, which cannot decide at 0.025."""
    row = evaluate(claim(quantity="feature_sd_spread", expect="less", versus="lenet5_lr5x"), experiment)
    assert row["measured"].startswith("1.00 vs 2.00 (medians;") and row["p_value"] == pytest.approx(1 / 6)
    assert row["verdict"] == "undecided at n = 2 (≈ 4 would decide)"
    assert "lenet5_lr5x: mixed outcomes (1 never left chance, 1 diverged); every run ranked" in row["notes"]
    # without a second group there is no rank test, and no "within the runs that trained" to claim
    alone = evaluate(claim(group="lenet5_lr5x", quantity="feature_sd_spread", value=1.0), experiment)
    assert alone["n"] == 2 and "lenet5_lr5x: mixed outcomes (1 never left chance, 1 diverged)" in alone["notes"]


def test_a_group_whose_runs_all_failed_alike_says_so(experiment):
    """Not mixed, so no rank test, but a spread or accuracy measured on runs that never trained is worth a note."""
    experiment.variants["stuck"] = experiment.variants["lenet5_lr5x"][:1]  # seed 0: never left chance
    row = evaluate(claim(versus="stuck"), experiment)
    assert "stuck: the run never left chance" in row["notes"]
    experiment.variants["stuck"] = experiment.variants["lenet5_lr5x"][:1] * 2
    assert "stuck: both runs never left chance" in evaluate(claim(versus="stuck"), experiment)["notes"]
    assert not evaluate(claim(versus="lenet5_lr1x"), experiment)["notes"]  # runs that trained: nothing to say


def test_steps_until_with_runs_that_never_got_there_use_ranks(experiment):
    """lenet5_lr5x never reaches 0.9 test accuracy; lenet5-bn_lr1x does in both seeds (step 20)."""
    row = evaluate(claim(quantity="steps_to_test_acc", at=0.9, versus="lenet5_lr5x", expect="less"), experiment)
    assert row["method"].startswith("Mann-Whitney") and "never" in row["measured"]
    assert row["p_value"] == pytest.approx(1 / 6)  # 2 vs 2, complete separation: 1 of C(4, 2) splits
    assert row["verdict"] == "undecided at n = 2 (≈ 4 would decide)"


def test_one_run_per_group_of_steps_until_is_undecided_not_an_error(experiment):
    """A smoke profile: one seed each, one of them never got there."""
    one = experiment.variants["lenet5_lr5x"][:1]
    experiment.variants["lenet5_lr5x"] = one
    experiment.variants["lenet5-bn_lr1x"] = experiment.variants["lenet5-bn_lr1x"][:1]
    row = evaluate(claim(quantity="steps_to_test_acc", at=0.9, versus="lenet5_lr5x", expect="less"), experiment)
    assert row["verdict"].startswith("undecided at n = 1")


def test_linear_region_share_counts_the_bins_inside_minus_one_to_one(tmp_path):
    """Hand-computed: range [-2, 2] in 8 bins (centres ±1.75, ±1.25, ±0.75, ±0.25): the middle four count."""
    from bnexp.claims import MEASURES
    from bnexp.results import Run
    from bnexp.store import RunDir

    hist = [1, 2, 3, 4, 5, 6, 7, 8]  # 36 values in range, 4 outside it: n = 40
    records = [
        {"step": 10, "layer": 0, "n": 40, "hist": hist},
        {"step": 10, "layer": 1, "n": 10, "hist": [0] * 8},
        {"step": 5, "layer": 0, "n": 40, "hist": [0, 0, 0, 40, 0, 0, 0, 0]},
    ]
    run = Run(RunDir(tmp_path), {"probes": {"range": [-2.0, 2.0]}}, {}, [], [], records)
    assert MEASURES["linear_region_share"](run, 1) == pytest.approx((3 + 4 + 5 + 6) / 40)  # the last step only
    assert MEASURES["linear_region_share"](run, 2) == 0.0
    assert MEASURES["linear_region_share"](run, None) == pytest.approx((18 / 40 + 0) / 2)


def test_step_time_ratio_reads_the_step_cost_analysis_and_is_none_without_it(tmp_path):
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    timed = Run(RunDir(tmp_path), {}, {}, [], [], [], {"step_cost": {"result": {"ratio_to_batchnorm": 1.6}}})
    assert measure(timed, "step_time_ratio_to_bn", None) == 1.6
    assert measure(Run(RunDir(tmp_path), {}, {}, [], [], []), "step_time_ratio_to_bn", None) is None


def test_long_sequence_acc_picks_the_stretch_and_is_none_for_an_unmeasured_one(tmp_path):
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    rows = [{"stretch": 1, "steps": 28, "test_acc": 0.8}, {"stretch": 2, "steps": 56, "test_acc": 0.6}]
    run = Run(RunDir(tmp_path), {}, {}, [], [], [], {"long_sequences": {"result": {"rows": rows}}})
    assert measure(run, "long_sequence_acc", 2.0) == 0.6 and measure(run, "long_sequence_acc", 1.0) == 0.8
    assert measure(run, "long_sequence_acc", 4.0) is None


def test_the_readme_excerpt_counts_the_articles_claims_and_lists_the_other_kinds_beneath(tmp_path):
    from bnexp.claims import claims_excerpt

    def row(exp, claim, verdict, effect=0.1, kind="article"):
        return {
            "experiment": exp,
            "id": claim,
            "claim": claim,
            "kind": kind,
            "verdict": verdict,
            "effect": effect,
            "interval": [-0.3, -0.1],
            "n": 3,
        }

    ranked = {
        **row("b", "v", "contradicted", None),
        "measured": "2.07 vs 0.3026 (medians)",
        "p_value": 0.99,
        "p_opposite": 0.014,
    }  # a rank comparison has no effect: what was measured, and the deciding p
    rows = [
        row("a", "x", "supported"),
        row("a", "y", "undecided at n = 3 (≈ 9 would decide)"),
        row("a", "z", "contradicted", -0.2),
        row("b", "w", "not measured"),
        ranked,
        row("a", "d", "contradicted", -0.5, kind="diagnostic"),
        row("b", "l", "supported", kind="literature"),
        row("b", "i", "contradicted", kind="identity"),
        {**row("a", "e", "contradicted", -0.3), "exploratory": True, "registered": "2026-12-02"},
    ]
    lines = claims_excerpt(rows, tmp_path, tmp_path / "results")
    # article claims only; an exploratory one is counted apart from the verdicts
    assert "| a | 4 | 1 | 1 | 1 | – | 1 |" in lines and "| b | 2 | – | 1 | – | 1 | – |" in lines
    assert "| **all** | 6 | 1 | 2 | 1 | 1 | 1 |" in lines
    beyond = lines[lines.index("Beyond the articles' claims (not counted above):") :]
    assert "| diagnostic | 1 | – | 1 | – | – | – |" in beyond and "| literature | 1 | 1 | – | – | – | – |" in beyond
    assert not any(line.startswith("| identity") for line in lines)
    contradicted = lines[lines.index("Contradicted by our runs:") : lines.index("Beyond the articles, contradicted:")]
    assert [line for line in contradicted if line.startswith("- ")] == [
        "- a: z: -0.2000 [-0.3000, -0.1000], n = 3",
        "- b: v: 2.07 vs 0.3026 (medians) (p = 0.014, the opposite direction), n = 3",
        "- a: e (exploratory): -0.3000 [-0.3000, -0.1000], n = 3",
    ]
    assert "- a: d (diagnostic): -0.5000 [-0.3000, -0.1000], n = 3" in lines
    assert lines[-1] == "Identities (checked as unit tests, not counted): `i`."
    assert "[results/REPORT.md](results/REPORT.md#claims-at-a-glance)" in lines[0]


def test_report_readme_needs_its_markers(tmp_path):
    from typer.testing import CliRunner

    from bnexp.cli import app

    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    results = write_experiment(tmp_path / "results").parent
    result = CliRunner().invoke(app, ["report", str(results), "--readme", str(readme)])
    assert result.exit_code == 2 and "--readme" in result.stderr and readme.read_text() == "# no markers here\n"


def test_report_keeps_a_replaced_files_mode_and_refuses_links(tmp_path):
    """Issue 37, item 4: a 0600 README became 0644, a linked README a plain file (its target never updated), and
    hard links parted. The mode is kept; a link or a hard-linked file is refused (exit 2), nothing written."""
    import os
    import stat

    from typer.testing import CliRunner

    from bnexp.claims import CLAIMS_BEGIN, CLAIMS_END
    from bnexp.cli import app

    results = write_experiment(tmp_path / "results").parent
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{CLAIMS_BEGIN}\n{CLAIMS_END}\n")
    readme.chmod(0o600)
    assert CliRunner().invoke(app, ["report", str(results), "--readme", str(readme)]).exit_code == 0
    assert stat.S_IMODE(readme.stat().st_mode) == 0o600 and "| experiment |" in readme.read_text()
    link = tmp_path / "LINK.md"
    link.symlink_to(readme)
    hard = tmp_path / "HARD.md"
    os.link(readme, hard)
    for target in (link, hard):
        before = readme.read_text()
        result = CliRunner().invoke(app, ["report", str(results), "--readme", str(target)])
        assert result.exit_code == 2 and "--readme" in result.stderr and readme.read_text() == before
    assert link.is_symlink()


def test_every_declared_quantity_has_a_measure():
    from bnexp.claims import MEASURES
    from bnexp.config import QUANTITIES

    assert set(MEASURES) == set(QUANTITIES)


def test_a_run_without_the_probe_has_no_value_but_a_misread_field_raises(tmp_path):
    """Issue 32, item 4: measure() swallowed KeyError and the like, so a misspelt key read as 'not measured'. A run
    that lacks the probe is None; a landscape record without a field every such record holds raises, as does a
    field name that the record's spec does not allow to be absent."""
    from bnexp.claims import measure
    from bnexp.claims.measure import _optional
    from bnexp.records import Summary
    from bnexp.results import Run
    from bnexp.store import RunDir

    record = {"probe": "landscape", "step": 1, "etas": [1.0], "loss_min": 0.5, "loss_max": 0.9}
    record |= {"grad_predictiveness": 0.1, "beta_smoothness": 2.0}
    probed = Run(RunDir(tmp_path), {}, {}, [], [], [record])
    assert measure(probed, "landscape_loss_range", None) == pytest.approx(0.4)
    assert measure(Run(RunDir(tmp_path), {}, {}, [], [], []), "landscape_loss_range", None) is None
    del record["loss_max"]
    with pytest.raises(KeyError, match="loss_max"):
        measure(probed, "landscape_loss_range", None)
    assert _optional({"final_test_acc": None}, "final_test_acc", Summary) is None  # a diverged run: no accuracy
    with pytest.raises(KeyError, match="final_test_accuracy"):
        _optional({"final_test_acc": 0.9}, "final_test_accuracy", Summary)
    with pytest.raises(KeyError, match="status"):  # required: read with [ ], never absent
        _optional({"status": "completed"}, "status", Summary)


def test_a_layer_with_a_null_weight_norm_has_no_ratio_and_the_others_still_count(tmp_path):
    """A non-finite norm is written as null: that layer has no ratio, the other layers keep theirs."""
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    def record(norms):
        return {"probe": "weights", "step": 1, "layers": ["a", "b", "c"], "weight_norm": norms, "effective_step": norms}

    records = [record([1.0, 1.0, 1.0])] * 3 + [record([2.0, None, 5.0])] * 3
    run = Run(RunDir(tmp_path), {}, {}, [], [], records)
    assert measure(run, "weight_norm_growth", 1) == 2.0 and measure(run, "weight_norm_growth", 2) is None
    assert measure(run, "weight_norm_growth", None) == 2.0  # layers a and b (not the last), b without a ratio
    assert measure(run, "weight_norm_growth", 4) is None  # no such layer


def test_a_threshold_the_runs_did_not_record_is_not_measured_with_a_note_not_never_reached(tmp_path):
    """time_to_threshold holds the thresholds of the run's config; one it does not list was never looked for, which
    is not the same as never reached (a rank test would have called every run the slowest)."""
    from bnexp.claims import claim_rows

    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    base = {"claim": "c", "source": "a5", "quote": "q", "kind": "article", "quantity": "steps_to_test_acc"}
    base |= {"group": "lenet5-bn_lr1x", "registered": "2026-12-01"}
    base |= {"expect": "less", "versus": "lenet5_lr5x"}
    meta["config"]["claims"] = [{"id": "listed", "at": 0.9, **base}, {"id": "unlisted", "at": 0.8, **base}]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    listed, unlisted = claim_rows(find_experiments(tmp_path))
    assert listed["verdict"] == "undecided at n = 2 (≈ 4 would decide)"
    assert unlisted["verdict"] == "not measured" and unlisted["n"] == 0
    assert unlisted["notes"] == [
        "not measured: lenet5-bn_lr1x_s0 recorded no time to test accuracy 0.8 (its thresholds: 0.9)"
    ]


def test_a_misread_field_is_a_visible_not_measured_row_not_a_claim_measured_on_fewer_runs(tmp_path, monkeypatch):
    """Before, the KeyError of a misspelt field was a silent None per run: the claim was decided on the runs left,
    or called not measured without a word. Now the report's row says what went wrong."""
    from bnexp.claims import MEASURES, claim_rows

    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"]["claims"] = [yaml.safe_load(CLAIM)["claims"][0]]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    monkeypatch.setitem(MEASURES, "final_test_acc", lambda run, at: run.summary.final_test_accuracy)
    (row,) = claim_rows(find_experiments(tmp_path))
    assert row["verdict"] == "not measured" and row["notes"] == [
        "could not be computed (AttributeError: 'Summary' object has no attribute 'final_test_accuracy')"
    ]
