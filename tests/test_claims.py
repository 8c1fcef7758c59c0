"""Claims in configs: validation with file:line errors, measurement on a run store, verdicts and bimodal cells."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from bnexp import stats
from bnexp.claims import evaluate
from bnexp.claims.markdown import effect_text
from bnexp.cli import app
from bnexp.config import ClaimConfig, ConfigError
from bnexp.records import (
    DistributionProbe,
    EvalRecord,
    LandscapeProbe,
    LongSequenceRow,
    LongSequences,
    StepCost,
    WeightsProbe,
)
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
    assert [(r.id, r.exploratory) for r in rows] == [("before", False), ("same-day", False), ("after", True)]
    meta["config"]["runs_began"] = "2026-11-19"
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert all(r.exploratory for r in claim_rows(find_experiments(tmp_path)))


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


def decide(claim, experiment):
    """What the runs decide about a claim (evaluate's result, without the claim's identity)."""
    return evaluate(claim, experiment).decision


@pytest.fixture
def experiment(tmp_path):
    return find_experiments(write_experiment(tmp_path))[0]


def test_verdicts_supported_contradicted_undecided_and_not_measured(experiment):
    # final accuracies: lenet5-bn_lr1x 0.91 / 0.93, lenet5_lr1x 0.88 / 0.90 (seeds 0 / 1): paired differences 0.03
    supported = decide(claim(versus="lenet5_lr1x"), experiment)
    assert supported.verdict == "supported" and supported.effect == pytest.approx(0.03)
    assert "paired t, 2 pairs" in supported.method
    contradicted = decide(claim(versus="lenet5_lr1x", expect="less"), experiment)
    assert contradicted.verdict == "contradicted"
    # against a value: mean 0.92, 95 % CI 0.92 ± 12.706 * 0.014142 / sqrt(2) = ± 0.127
    undecided = decide(claim(value=0.915), experiment)
    assert undecided.interval == pytest.approx((0.005 - 0.12706, 0.005 + 0.12706), abs=1e-4)
    assert undecided.verdict.startswith("undecided at n = 2 (≈ ") and "would decide" in undecided.verdict
    assert decide(claim(group="lenet5-gn_lr1x", value=0.5), experiment).verdict == "not measured"


def test_equivalence_and_consistency_claims(experiment):
    same = decide(claim(versus="lenet5-bn_lr1x", expect="equivalent", margin=0.01), experiment)
    assert same.verdict == "supported" and same.interval90 == pytest.approx((0.0, 0.0))
    # the table prints the 90 % interval the verdict is decided by beside the 95 % one
    shown = same.model_copy(update={"effect": -0.0029, "interval": (-0.0125, 0.0066), "interval90": (-0.0098, 0.0039)})
    assert effect_text(shown) == "-0.0029 [-0.0125, +0.0066]; 90 %: [-0.0098, +0.0039]"
    far = decide(claim(versus="lenet5_lr1x", expect="equivalent", margin=0.01), experiment)
    assert far.verdict == "contradicted"  # differences of exactly 0.03, outside ±0.01
    # the article's epoch-1 and -2 runs against ours (0.89/0.91 and 0.90/0.92), on the mean over both epochs: ours
    # 0.895 and 0.915 (mean 0.905, sd 0.01414), the article's 0.885; PI 0.905 ± 12.706 · 0.01414 · √1.5
    ok = decide(claim(quantity="test_acc_at_epoch", expect="consistent", value={1.0: 0.88, 2.0: 0.89}), experiment)
    assert ok.verdict == "consistent with ours" and ok.points == 2 and ok.effect == pytest.approx(0.02)
    assert ok.interval == pytest.approx((0.02 - 0.22007, 0.02 + 0.22007), abs=1e-4)
    assert ok.p_value == pytest.approx(1 - 2 / math.pi * math.atan(0.02 / (0.014142 * math.sqrt(1.5))), rel=1e-3)
    assert "(mean over 1, 2)" in ok.measured and not ok.notes
    # a constant offset: t = 20 at each epoch, inside each point's Bonferroni 97.5 % interval (t(1) 25.45, p 0.032
    # > 0.025), which could not see it; on the mean, outside the 95 % one (12.71): p = 1 − 2/π · atan(20)
    shifted = decide(
        claim(quantity="test_acc_at_epoch", expect="consistent", value={1.0: 0.5536, 2.0: 0.5636}), experiment
    )
    assert shifted.p_value == pytest.approx(1 - 2 / math.pi * math.atan(20), rel=1e-3) and not shifted.favours
    assert shifted.verdict == "outside ours (p = 0.032)" and shifted.effect == pytest.approx(0.3464)
    assert shifted.notes == ("our runs are systematically above the article's: offset +0.3464 (mean over 1, 2)",)


def test_mixed_outcomes_are_counted_not_averaged(experiment):
    """lenet5_lr5x: seed 0 never left chance, seed 1 diverged: no mean over them."""
    row = decide(claim(group="lenet5_lr5x", versus="lenet5_lr1x"), experiment)
    assert any("mixed outcomes (1 never left chance, 1 diverged)" in n for n in row.notes)
    # no run of lr5x trained, so there is no accuracy to average: the share of runs that trained decides
    assert row.measured == "trained 0/2 vs 2/2" and row.method.startswith("share of runs that trained")
    # Boschloo's exact test: the only table as extreme has probability (1 − π)²π², at most 1/16 (π = 1/2); two
    # runs a side cannot decide at 5 % two-sided (Newcombe's interval, [-1, -0.07], called it contradicted)
    assert row.effect == -1.0 and row.p_value == pytest.approx(2 / 16) and not row.favours
    assert row.verdict == "undecided at n = 2 (the estimate points the other way)"
    less = decide(claim(group="lenet5_lr5x", versus="lenet5_lr1x", expect="less"), experiment)
    assert less.verdict.startswith("undecided at n = 2 (≈ ") and less.favours
    # a quantity that is not an accuracy has no such order: every run of the group is kept, and ranked
    loss = decide(claim(group="lenet5_lr5x", versus="lenet5_lr1x", quantity="final_train_loss"), experiment)
    assert loss.method.startswith("Mann-Whitney") and loss.p_value == pytest.approx(2 / 6)
    share = decide(claim(group="lenet5_lr5x", quantity="near_chance_at_end", versus="lenet5_lr1x"), experiment)
    assert share.measured == "1/2 vs 0/2" and share.method.startswith("Boschloo")
    assert share.verdict.startswith("undecided at n = 2")


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
    row = decide(claim(versus="mixed"), experiment)
    assert row.method.startswith("Mann-Whitney") and "every run ranked" in row.method
    assert row.p_value == pytest.approx(2 / 15) and row.effect is None  # two-sided: twice the one-sided 1/15
    assert row.verdict == "undecided at n = 2 (≈ 4 would decide)"
    assert "2 trained, 1 never left chance, 1 diverged" in row.measured
    assert any(n.startswith("mixed: mixed outcomes (") and n.endswith("; every run ranked") for n in row.notes)
    other_way = decide(claim(versus="mixed", expect="less"), experiment)
    assert other_way.verdict == "undecided at n = 2 (the ranks point the other way)"
    assert other_way.p_value == pytest.approx(2 / 15) and not other_way.favours
    # "about as well as" has no rank form: compared within the runs that trained, as before
    equivalent = decide(claim(versus="mixed", expect="equivalent", margin=0.1), experiment)
    assert any(n.endswith("compared within the runs that trained") for n in equivalent.notes)


def test_a_mixed_group_without_a_run_that_trained_keeps_every_run_for_other_quantities(experiment):
    """E3 at batch 1: one net never left chance, the other fell back; their feature maps are still measured.
    lenet5_lr5x (never left chance, diverged) has spread ratio 2 in both runs, lenet5-bn_lr1x 1: a complete
    separation of 2 runs against 2, p = 1/6, which cannot decide at 0.025."""
    row = decide(claim(quantity="feature_sd_spread", expect="less", versus="lenet5_lr5x"), experiment)
    assert row.measured.startswith("1.00 vs 2.00 (medians;") and row.p_value == pytest.approx(2 / 6)
    assert row.verdict == "undecided at n = 2 (≈ 4 would decide)"
    assert "lenet5_lr5x: mixed outcomes (1 never left chance, 1 diverged); every run ranked" in row.notes
    # without a second group there is no rank test, and no "within the runs that trained" to claim
    alone = decide(claim(group="lenet5_lr5x", quantity="feature_sd_spread", value=1.0), experiment)
    assert alone.n == 2 and "lenet5_lr5x: mixed outcomes (1 never left chance, 1 diverged)" in alone.notes


def test_a_group_whose_runs_all_failed_alike_says_so(experiment):
    """Not mixed, so no rank test, but a spread or accuracy measured on runs that never trained is worth a note."""
    experiment.variants["stuck"] = experiment.variants["lenet5_lr5x"][:1]  # seed 0: never left chance
    row = decide(claim(versus="stuck"), experiment)
    assert "stuck: the run never left chance" in row.notes
    experiment.variants["stuck"] = experiment.variants["lenet5_lr5x"][:1] * 2
    assert "stuck: both runs never left chance" in decide(claim(versus="stuck"), experiment).notes
    assert not decide(claim(versus="lenet5_lr1x"), experiment).notes  # runs that trained: nothing to say


def test_steps_until_with_runs_that_never_got_there_use_ranks(experiment):
    """lenet5_lr5x never reaches 0.9 test accuracy; lenet5-bn_lr1x does in both seeds (step 20)."""
    row = decide(claim(quantity="steps_to_test_acc", at=0.9, versus="lenet5_lr5x", expect="less"), experiment)
    assert row.method.startswith("Mann-Whitney") and "never" in row.measured
    # 2 vs 2, complete separation: 1 of C(4, 2) splits each way, two-sided twice that
    assert row.p_value == pytest.approx(2 / 6) and row.favours
    assert row.verdict == "undecided at n = 2 (≈ 4 would decide)"


def test_one_run_per_group_of_steps_until_is_undecided_not_an_error(experiment):
    """A smoke profile: one seed each, one of them never got there."""
    one = experiment.variants["lenet5_lr5x"][:1]
    experiment.variants["lenet5_lr5x"] = one
    experiment.variants["lenet5-bn_lr1x"] = experiment.variants["lenet5-bn_lr1x"][:1]
    row = decide(claim(quantity="steps_to_test_acc", at=0.9, versus="lenet5_lr5x", expect="less"), experiment)
    assert row.verdict.startswith("undecided at n = 1")


def test_linear_region_share_counts_the_bins_inside_minus_one_to_one(tmp_path):
    """Hand-computed: range [-2, 2] in 8 bins (centres ±1.75, ±1.25, ±0.75, ±0.25): the middle four count."""
    from bnexp.claims import MEASURES
    from bnexp.results import Run
    from bnexp.store import RunDir

    hist = [1, 2, 3, 4, 5, 6, 7, 8]  # 36 values in range, 4 outside it: n = 40
    records = [
        DistributionProbe.model_construct(step=10, layer=0, n=40, hist=hist),
        DistributionProbe.model_construct(step=10, layer=1, n=10, hist=[0] * 8),
        DistributionProbe.model_construct(step=5, layer=0, n=40, hist=[0, 0, 0, 40, 0, 0, 0, 0]),
    ]
    run = Run(RunDir(tmp_path), {"probes": {"range": [-2.0, 2.0]}}, {}, [], [], records)
    assert MEASURES["linear_region_share"](run, 1) == pytest.approx((3 + 4 + 5 + 6) / 40)  # the last step only
    assert MEASURES["linear_region_share"](run, 2) == 0.0
    assert MEASURES["linear_region_share"](run, None) == pytest.approx((18 / 40 + 0) / 2)


def test_step_time_ratio_reads_the_step_cost_analysis_and_is_none_without_it(tmp_path):
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    cost = StepCost(ratio_to_batchnorm=1.6, ratios=[], ms_per_step={})
    timed = Run(RunDir(tmp_path), {}, {}, [], [], [], {"step_cost": cost})
    assert measure(timed, "step_time_ratio_to_bn", None) == 1.6
    assert measure(Run(RunDir(tmp_path), {}, {}, [], [], []), "step_time_ratio_to_bn", None) is None


def test_long_sequence_acc_picks_the_stretch_and_is_none_for_an_unmeasured_one(tmp_path):
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    rows = [LongSequenceRow(stretch=1, steps=28, test_acc=0.8), LongSequenceRow(stretch=2, steps=56, test_acc=0.6)]
    run = Run(RunDir(tmp_path), {}, {}, [], [], [], {"long_sequences": LongSequences(rows=rows)})
    assert measure(run, "long_sequence_acc", 2.0) == 0.6 and measure(run, "long_sequence_acc", 1.0) == 0.8
    assert measure(run, "long_sequence_acc", 4.0) is None


def test_the_readme_excerpt_counts_the_articles_claims_and_lists_the_other_kinds_beneath(tmp_path):
    from bnexp.claims import ClaimResult, Decision, claims_excerpt

    def row(exp, claim, verdict, effect=0.1, kind="article", exploratory=False, **decided):
        decision = Decision(verdict=verdict, effect=effect, interval=(-0.3, -0.1), n=3, **decided)
        return ClaimResult(
            id=claim,
            experiment=exp,
            claim=claim,
            source="s",
            kind=kind,
            registered="2026-12-02",
            exploratory=exploratory,
            quantity="q",
            compared="c",
            figure=None,
            decision=decision,
            expect="less",
            verdict=verdict,
        )

    # a rank comparison has no effect: what was measured, and the deciding p
    ranked = row("b", "v", "contradicted", None, measured="2.07 vs 0.3026 (medians)", p_value=0.029, favours=False)
    rows = [
        row("a", "x", "supported"),
        row("a", "y", "undecided at n = 3 (≈ 9 would decide)"),
        row("a", "z", "contradicted", -0.2),
        row("b", "w", "not measured"),
        ranked,
        row("a", "d", "contradicted", -0.5, kind="diagnostic"),
        row("b", "l", "supported", kind="literature"),
        row("b", "i", "contradicted", kind="identity"),
        row("a", "e", "contradicted", -0.3, exploratory=True),
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
        "- b: v: 2.07 vs 0.3026 (medians) (p = 0.029), n = 3",
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
    that lacks the probe is None; a misspelt field of a record raises (records are their models, read by
    attribute), and so does a probe kind that is no probe's."""
    from bnexp.claims import measure
    from bnexp.claims.measure import _landscape
    from bnexp.results import Run
    from bnexp.store import RunDir

    record = LandscapeProbe(
        step=1, etas=[1.0], loss_min=0.5, loss_max=0.9, grad_predictiveness=0.1, beta_smoothness=2.0
    )
    probed = Run(RunDir(tmp_path), {}, {}, [], [], [record])
    assert measure(probed, "landscape_loss_range", None) == pytest.approx(0.4)
    assert measure(Run(RunDir(tmp_path), {}, {}, [], [], []), "landscape_loss_range", None) is None
    with pytest.raises(AttributeError, match="loss_maximum"):
        _landscape(lambda p: p.loss_maximum - p.loss_min)(probed, None)
    with pytest.raises(KeyError, match="EvalRecord"):
        probed.probe(EvalRecord)


def test_a_layer_with_a_null_weight_norm_has_no_ratio_and_the_others_still_count(tmp_path):
    """A non-finite norm is written as null: that layer has no ratio, the other layers keep theirs."""
    from bnexp.claims import measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    def record(norms):
        return WeightsProbe(step=1, layers=["a", "b", "c"], weight_norm=norms, effective_step=norms)

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
    assert listed.decision.verdict == "undecided at n = 2 (≈ 4 would decide)"
    assert unlisted.decision.verdict == "not measured" and unlisted.decision.n == 0
    assert unlisted.decision.notes == (
        "not measured: lenet5-bn_lr1x_s0 recorded no time to test accuracy 0.8 (its thresholds: 0.9)",
    )


def test_a_misread_field_raises_not_a_claim_quietly_not_measured(tmp_path, monkeypatch):
    """A misspelt field is a bug: it raises, where a broad except once made it a "not measured" row (and before
    that a silent None per run). Only a run that lacks what the quantity needs (NotRecorded) is not measured."""
    from bnexp.claims import MEASURES, claim_rows

    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"]["claims"] = [yaml.safe_load(CLAIM)["claims"][0]]
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    monkeypatch.setitem(MEASURES, "final_test_acc", lambda run, at: run.summary.final_test_accuracy)
    with pytest.raises(AttributeError, match="final_test_accuracy"):
        claim_rows(find_experiments(tmp_path))


def _result(experiment, id, p, verdict, kind="article", favours=True, expect="greater"):
    from bnexp.claims import ClaimResult, Decision

    decision = Decision(verdict=verdict, n=5, p_value=p, favours=favours)
    return ClaimResult(
        id=id,
        experiment=experiment,
        claim=id,
        source="s",
        kind=kind,
        registered="2026-12-01",
        exploratory=False,
        expect=expect,
        quantity="final_test_acc",
        compared="a > b",
        figure=None,
        decision=decision,
        verdict=verdict,
    )


def test_multiplicity_holm_within_an_experiments_article_claims_and_bh_over_the_report():
    """Family a: raw p 0.01, 0.03, 0.04 (all supported at 5 %) -> Holm 0.03, 0.06, 0.06: two fall to undecided;
    a literature claim (p 0.03) is in no family and keeps its verdict; experiment b decides each by its own p;
    a consistency claim whose raw p said 'outside' is kept consistent when its Holm p is not below 5 %. BH over
    all seven p's (0.01, 0.03, 0.04, 0.03, 0.02, 0.2, 0.03), by hand: sorted 0.01, 0.02, 0.03 ×3, 0.04, 0.2 times
    7/rank: 0.07, 0.07, 0.07, 0.0525, 0.042, 0.0467, 0.2 -> stepped up from the top: 0.042 for ranks 1-5."""
    from bnexp.claims.multiplicity import adjust

    rows = [
        _result("a", "x", 0.01, "supported"),
        _result("a", "y", 0.03, "supported"),
        _result("a", "z", 0.04, "contradicted", favours=False),
        _result("a", "lit", 0.03, "supported", kind="literature"),
        _result("b", "w", 0.02, "supported"),
        _result("a", "undecided", 0.2, "undecided at n = 5 (≈ 9 would decide)"),
        _result("c", "run", 0.03, "outside ours (p = 0.03)", favours=False, expect="consistent"),
        _result("a", "none", None, "not measured"),
    ]
    x, y, z, lit, w, undecided, run, none = adjust(rows, {"a": "holm", "b": "none", "c": "holm"})
    # family a: 0.01, 0.03, 0.04, 0.2 -> ×4, ×3, ×2, ×1: 0.04, 0.09, 0.08 -> 0.09, 0.2
    assert [r.p_holm for r in (x, y, z, undecided)] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert x.verdict == "supported" and y.verdict == "undecided at n = 5 (after Holm)"
    assert z.verdict == "undecided at n = 5 (after Holm)" and z.decision.verdict == "contradicted"
    assert undecided.verdict == "undecided at n = 5 (≈ 9 would decide)"
    assert lit.p_holm is None and lit.family == "not in a family" and lit.verdict == "supported"
    assert w.p_holm is None and w.family == "not adjusted (multiplicity: none)" and w.verdict == "supported"
    assert run.p_holm == pytest.approx(0.03) and run.verdict == "outside ours (p = 0.03)"  # a family of one
    qs = [r.q_bh for r in (x, y, z, lit, w, undecided, run)]
    assert qs == pytest.approx([0.042, 0.042, 0.0467, 0.042, 0.042, 0.2, 0.042], abs=1e-4)
    assert none.q_bh is None and none.p_holm is None and none.verdict == "not measured"
    # a consistency claim in a family whose Holm p is not below 5 %: the article's run is no longer outside ours
    (kept, _) = adjust([rows[6], _result("c", "v", 0.04, "supported")], {"c": "holm"})
    assert kept.p_holm == pytest.approx(0.06) and kept.verdict == "consistent with ours"


def test_the_claims_table_shows_raw_holm_and_bh_and_the_raw_verdict_where_it_differs(tmp_path):
    from bnexp.claims import claims_markdown
    from bnexp.claims.multiplicity import adjust

    # Holm over x, y, z: 0.01 × 3, 0.03 × 2, 0.3: 0.03, 0.06, 0.3; BH over all four: 0.04, 0.06, 0.4, 0.5
    rows = [
        _result("a", "x", 0.01, "supported"),
        _result("a", "y", 0.03, "supported"),
        _result("a", "z", 0.3, "undecided at n = 5"),
    ]
    rows = adjust([*rows, _result("a", "l", 0.5, "undecided at n = 5", kind="literature")], {"a": "holm"})
    lines = claims_markdown(rows, [], tmp_path)
    table = {line.split("`")[1]: line for line in lines if line.startswith("| ") and "(`" in line}
    assert "| 0.01 | 0.03 | 0.04 | **supported** |" in table["x"]
    assert "| 0.03 | 0.06 | 0.06 | **undecided at n = 5 (after Holm)** (raw: supported) |" in table["y"]
    assert "| 0.5 | not in a family | 0.5 | **undecided at n = 5** |" in table["l"]
    assert "| p | Holm p | BH q | verdict |" in "\n".join(lines)


def test_a_share_against_a_value_is_decided_by_the_exact_binomial_test(experiment):
    """near_chance_at_end: 0 of lenet5-bn_lr1x's 2 runs. Claimed above 0.5: the estimate points the other way, and
    more runs would not help; claimed below: binomial p of 0/2 at 1/2 is 1/4, two-sided 1/2: undecided, with the
    one-sample formula's runs."""
    up = decide(claim(quantity="near_chance_at_end", expect="greater", value=0.5), experiment)
    assert up.verdict == "undecided at n = 2 (the estimate points the other way)" and not up.favours
    down = decide(claim(quantity="near_chance_at_end", expect="less", value=0.5), experiment)
    assert down.p_value == pytest.approx(0.5) and down.favours and down.method.startswith("exact binomial")
    assert down.verdict == f"undecided at n = 2 (≈ {stats.seeds_needed_proportion(0.0, 0.5)} would decide)"


def test_an_article_run_outside_ours_counts_as_contradicted_and_consistent_as_supported(tmp_path):
    from bnexp.claims import claims_excerpt

    rows = [
        _result("e", "in", 0.4, "consistent with ours", favours=False, expect="consistent"),
        _result("e", "out", 0.015, "outside ours (p = 0.015)", favours=False, expect="consistent"),
    ]
    lines = claims_excerpt(rows, tmp_path, tmp_path / "results")
    assert "| e | 2 | 1 | 1 | – | – | – |" in lines
    assert [line for line in lines if line.startswith("- ")] == ["- e: out: – (p = 0.015), n = 5"]


def test_an_experiments_multiplicity_is_read_from_its_record_and_checked(tmp_path):
    from bnexp.records import check_experiment_meta
    from bnexp.store import CorruptFile

    exp_dir = write_experiment(tmp_path)
    meta = yaml.safe_load((exp_dir / EXPERIMENT_FILE).read_text())
    meta["config"].pop("multiplicity", None)
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert find_experiments(tmp_path)[0].multiplicity == "holm"  # a record from before the key: the default
    meta["config"]["multiplicity"] = "none"
    (exp_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(meta))
    assert find_experiments(tmp_path)[0].multiplicity == "none"
    meta["config"]["multiplicity"] = "bonferroni"
    with pytest.raises(CorruptFile, match="multiplicity"):
        check_experiment_meta(exp_dir / EXPERIMENT_FILE, meta)


def test_last_mean_and_generalization_gap_average_the_last_evaluations(tmp_path):
    from bnexp.claims import NotRecorded, measure
    from bnexp.results import Run
    from bnexp.store import RunDir

    accs = [(0.5, 0.6), (0.7, 0.9), (0.8, 1.0), (0.9, 1.0)]  # (test, train) per evaluation
    evals = [EvalRecord(step=i, epoch=i, test_acc=t, train_acc=tr) for i, (t, tr) in enumerate(accs, 1)]
    run = Run(RunDir(tmp_path), {}, {}, evals, [], [])
    assert measure(run, "test_acc_last_mean", 3.0) == pytest.approx(0.8)
    assert measure(run, "test_acc_last_mean", 1.0) == pytest.approx(0.9)
    assert measure(run, "generalization_gap", 2.0) == pytest.approx(0.15)
    assert measure(run, "test_acc_last_mean", 5.0) is None  # fewer evaluations than asked for
    diverged = Run(RunDir(tmp_path), {}, {}, [*evals[:3], EvalRecord(step=4, epoch=4, train_acc=0.1)], [], [])
    assert measure(diverged, "test_acc_last_mean", 3.0) is None
    no_train = Run(RunDir(tmp_path), {}, {}, [EvalRecord(step=1, epoch=1, test_acc=0.5)], [], [])
    with pytest.raises(NotRecorded, match="no training accuracy"):
        measure(no_train, "generalization_gap", 1.0)


def test_a_count_at_must_be_a_whole_number_of_evaluations():
    from bnexp.config import ClaimConfig, ConfigError, from_dict

    base = {"id": "c", "claim": "c", "source": "s", "quantity": "test_acc_last_mean", "group": "a"}
    base |= {"expect": "greater", "versus": "b", "kind": "diagnostic", "registered": "2026-12-07"}
    assert from_dict(ClaimConfig, {**base, "at": 3}, "claim").at == 3
    for bad in (0, 2.5, None):
        with pytest.raises(ConfigError, match="how many of the last evaluations"):
            from_dict(ClaimConfig, {**base, "at": bad}, "claim")


def test_after_looks_a_verdict_needs_its_p_below_the_last_looks_nominal_level():
    """Seeds added after a look: the verdict is decided at the group-sequential boundary's last nominal level
    (here 0.046), for a family's Holm p and for a claim in no family alike; a p below it keeps its verdict."""
    from bnexp.claims.multiplicity import adjust

    rows = [
        _result("a", "alone", 0.047, "supported"),
        _result("a", "lit", 0.048, "supported", kind="literature"),
        _result("a", "lit-strong", 0.01, "supported", kind="literature"),
        _result("b", "elsewhere", 0.047, "supported"),
    ]
    alone, lit, strong, elsewhere = adjust(rows, {"a": "holm", "b": "holm"}, {"a": 0.046})
    assert alone.verdict == lit.verdict == "undecided at n = 5 (at the looks' boundary)"
    assert strong.verdict == "supported" and elsewhere.verdict == "supported"  # b has no looks: 5 %
