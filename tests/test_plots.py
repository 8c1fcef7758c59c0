from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.lines import Line2D
from typer.testing import CliRunner

from bnexp.cli import app
from bnexp.plots import FIGURES, NORM_COLORS, render
from bnexp.results import find_experiments

from .rundata import write_experiment

DRIFT_PANELS = 6  # accuracy, loss, and mean and sd of the two probed layers


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.has_data()]


def test_every_figure_kind_applies_and_has_its_panels(tmp_path):
    exp = find_experiments(write_experiment(tmp_path))[0]
    expected = {
        "convergence": 2,
        "learning_rate": 3,
        "feature_distribution": 8,
        "percentiles": 5,
        "generalization": 1,
        "distribution_drift": DRIFT_PANELS,
    }
    assert {name for name, k in FIGURES.items() if k.applies(exp)} == set(
        expected
    )  # the others need grids, analyses or probes
    for name in expected:
        fig = FIGURES[name].draw(exp)
        assert len(panels(fig)) == expected[name], name
        assert fig._suptitle is not None and exp.name in fig._suptitle.get_text()
        for ax in panels(fig):
            assert (ax.get_xlabel() and ax.get_ylabel()) or name in ("feature_distribution", "distribution_drift")
        plt.close(fig)


def test_convergence_uses_the_variant_colours_and_marks_the_reference(tmp_path):
    exp = find_experiments(write_experiment(tmp_path))[0]
    kind = FIGURES["convergence"]
    fig = kind.draw(exp)
    acc = fig.axes[1]
    colours = {line.get_color() for line in acc.get_lines() if line.get_label().startswith(("BN", "no norm"))}
    assert colours == {NORM_COLORS["none"], NORM_COLORS["batchnorm"]}
    assert any(line.get_label() == "article" for line in acc.get_lines())
    plt.close(fig)


def test_feature_distribution_rows_say_when_the_run_never_trained(tmp_path):
    """Maps of a net that never left chance are those of a net that did not learn: its row says so."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    fig = FIGURES["feature_distribution"].draw(exp)
    rows = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert sum("(never left chance)" in r for r in rows) == 1  # lenet5_lr5x's seed 0; the others trained
    assert sum("(" not in r for r in rows) == len(rows) - 1
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)


def test_only_fitting_figures(tmp_path):
    exp = find_experiments(write_experiment(tmp_path))[0]
    exp.config["probes"] = None
    for run in exp.runs:
        for r in run.evals:
            r.train_acc = None  # not evaluated on training images
    names = {name for name, k in FIGURES.items() if k.applies(exp)}
    assert names == {"convergence", "learning_rate"}


def test_render_writes_non_empty_files(tmp_path):
    exp = find_experiments(write_experiment(tmp_path))[0]
    paths = render(exp, tmp_path / "figs", "svg")
    assert len(paths) == 6 and all(p.suffix == ".svg" and p.stat().st_size > 10_000 for p in paths)


def test_plot_cli_reads_a_results_folder(tmp_path):
    write_experiment(tmp_path / "results")
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "results" / "synthetic" / "figures").glob("*.png"))
    assert len(pngs) == 6 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert CliRunner().invoke(app, ["plot", str(tmp_path / "nothing")]).exit_code == 2
    assert CliRunner().invoke(app, ["plot", str(tmp_path), "--format", "gif"]).exit_code == 2


def test_batch_size_draws_no_mean_over_seeds_that_ended_differently(tmp_path):
    """A batch size whose seeds had different outcomes (one trained, one never left chance) is drawn seed by
    seed, the one that did not train ringed; the line and its error bars pass only through the other sizes."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    plain = [r for r in exp.runs if r.config["model"]["norm"] == "none"]  # lr x1 trains, lr x5 never leaves chance
    for r in exp.runs:
        r.config["grid"] = {"batch_size": 4}
    for r in plain:  # batch 2: one of each outcome; batch 8 and 16: one outcome each
        stuck, seed = r.config["lr_multiplier"] == 5.0, r.config["seed"]
        r.config["grid"] = {"batch_size": 2 if seed == 0 else 16 if stuck else 8}
    kind = FIGURES["batch_size"]
    assert kind.applies(exp)
    fig = kind.draw(exp)
    err = fig.axes[0]
    colour = NORM_COLORS["none"]
    line = next(ln for ln in err.get_lines() if ln.get_color() == colour and len(ln.get_xdata()) > 1)
    assert list(line.get_xdata()) == [8, 16]
    dots = [ln for ln in err.get_lines() if len(ln.get_xdata()) == 1 and 1.8 < ln.get_xdata()[0] < 2.2]
    assert sum(ln.get_color() == colour for ln in dots) == 2  # each seed at batch 2
    assert sum(ln.get_markerfacecolor() == "none" for ln in dots) == 1  # the one that never left chance, ringed
    assert "where every seed had the same outcome" in err.get_title()
    plt.close(fig)


def test_batch_size_marks_seeds_that_did_not_train_where_all_ended_alike(tmp_path):
    """E3 at batch 1: both BN nets fell back, so their cell has a mean, but a plain dot there would hide that
    neither trained: each seed is marked, as learning_rate marks it."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    for r in exp.runs:  # lenet5 at lr x5 never leaves chance (seed 0) or diverges (seed 1): batch 2
        r.config["grid"] = {"batch_size": 2 if r.config["lr_multiplier"] == 5.0 else 8}
    stuck = [r for r in exp.runs if r.config["lr_multiplier"] == 5.0]
    exp.runs = [r for r in exp.runs if r not in stuck] + [stuck[0]] * 2  # two seeds that never left chance
    fig = FIGURES["batch_size"].draw(exp)
    rings = [ln for ln in fig.axes[0].get_lines() if ln.get_markerfacecolor() == "none" and len(ln.get_xdata())]
    xs = [ln.get_xdata()[0] for ln in rings]
    assert len(xs) == 2 and all(1.8 < x < 2.2 for x in xs) and xs[0] != xs[1]  # at batch 2, side by side
    assert "where every seed had the same outcome" not in fig.axes[0].get_title()  # no cell is mixed
    plt.close(fig)


@pytest.mark.parametrize(
    ("lr_at", "words"),
    [
        (lambda size: 0.1, "lr 0.1 at every size"),  # E3: the script's 0.1 at batch 1 and 512
        (lambda size: 0.05 * size / 32, "lr scaled linearly"),  # the GroupNorm sweep
        (lambda size: 0.1 if size < 4 else 0.2, "lr as configured per size"),
    ],
)
def test_batch_size_axis_says_how_the_lr_went_with_the_batch(tmp_path, lr_at, words):
    exp = find_experiments(write_experiment(tmp_path))[0]
    for i, r in enumerate(exp.runs):
        size = (2, 8, 32)[i % 3]
        r.config["grid"], r.config["lr"] = {"batch_size": size}, lr_at(size)
    fig = FIGURES["batch_size"].draw(exp)
    assert fig.axes[0].get_xlabel() == f"batch size (images per step; {words})"
    plt.close(fig)


def test_seeds_that_did_not_train_are_marked_alike_in_both_figures_and_only_seen_outcomes_are_in_the_legend(tmp_path):
    """batch_size and learning_rate mark a seed the same way (diverged: a red x, at accuracy 0 where it has no
    value; never left chance: a ring); neither legend names an outcome no run had (no run here fell back)."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    for r in exp.runs:
        r.config["grid"] = {"batch_size": 4}
    for r in exp.runs:
        if (r.config["model"]["norm"] == "none" and r.config["seed"] == 0) or r.status == "diverged":
            r.config["grid"] = {"batch_size": 2}  # trained, never left chance, diverged
        if r.status == "diverged":
            r.summary.final_test_acc = None
    for name in ("batch_size", "learning_rate"):
        fig = FIGURES[name].draw(exp)
        ax = fig.axes[0] if name == "batch_size" else fig.axes[-1]
        crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x" and len(ln.get_xdata()) == 1]
        assert len(crosses) == 1 and crosses[0].get_color() == "red", name
        assert crosses[0].get_ydata()[0] == (100.0 if name == "batch_size" else 0.0), name  # no accuracy: 0
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any(t.startswith("diverged") for t in legend) and any("never left chance" in t for t in legend), name
        assert not any("fell back" in t for t in legend), name
        plt.close(fig)
    for r in exp.runs:  # every cell of one outcome: no seed is drawn alone, and the legend says nothing of it
        stuck = r.config["model"]["norm"] == "none" and r.config["lr_multiplier"] == 5.0
        r.config["grid"] = {"batch_size": 16 if stuck else 2 if r.config["seed"] == 0 else 8}
        if r.status == "diverged":  # now a run that never left chance, like the other seed of its cell
            r.summary.status, r.summary.final_test_acc = "completed", 0.1
    for name in ("batch_size", "learning_rate"):
        fig = FIGURES[name].draw(exp)
        ax = fig.axes[0] if name == "batch_size" else fig.axes[-1]
        assert not any("each seed" in t.get_text() for t in ax.get_legend().get_texts()), name
        plt.close(fig)


def _suptitle(fig) -> str:
    return fig._suptitle.get_text()


def test_unfinished_runs_are_in_no_figure_and_each_figure_says_so(tmp_path):
    """Issue 38, item 5: a run interrupted after 5 of 200 logged windows is drawn nowhere: it changes no panel's
    smoothing window, no curve's n and no run count in a title, and every figure names it as not drawn."""
    import json

    from bnexp.store import RunDir

    exp_dir = write_experiment(tmp_path, epochs=40)  # 200 logged windows per run: smoothed over 3
    run = RunDir(exp_dir / "lenet5-bn_lr1x_s0")
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    (run.path / "metrics.jsonl").write_text("\n".join(lines[:5]) + "\n")
    run.write_summary({**run.summary(), "status": "interrupted"})
    exp = find_experiments(exp_dir)[0]
    kinds = {name: k for name, k in FIGURES.items() if k.applies(exp)}
    assert len(kinds) == 6
    for name, kind in kinds.items():
        fig = kind.draw(exp)
        title = _suptitle(fig)
        assert "7 runs" in title and "1 unfinished run not drawn (lenet5-bn_lr1x_s0)" in title, name
        if name == "convergence":
            labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
            assert fig.axes[0].get_title().endswith("(each point the mean of 6 steps)")
            assert "BN, lr 0.01 (n=1)" in labels and "BN, lr 0.01 (n=2)" not in labels
        plt.close(fig)
    for r in exp.runs:  # none finished: no figure at all
        r.summary.status = "interrupted"
    assert not [k for k in FIGURES.values() if k.applies(exp)]
    assert json.loads((run.path / "summary.json").read_text())["status"] == "interrupted"


def test_figure_words_have_their_plural_forms(tmp_path):
    """A title counts '1 run, 1 variant', and a loss curve's point says how many steps it averages (not 'a moving
    average of 1 records')."""
    exp = find_experiments(write_experiment(tmp_path))[0]  # 15 logged windows: no smoothing
    fig = FIGURES["convergence"].draw(exp)
    assert (
        fig.axes[0].get_title() == "training loss, median over seeds, each seed thin\n(each point the mean of 2 steps)"
    )
    assert "8 runs, 4 variants" in _suptitle(fig)
    plt.close(fig)
    exp.runs = exp.runs[:1]
    exp.variants = {exp.runs[0].variant: exp.runs[:1]}
    fig = FIGURES["convergence"].draw(exp)
    assert "1 run, 1 variant;" in _suptitle(fig)
    plt.close(fig)


def test_plot_out_keeps_experiments_recorded_under_one_name_apart(tmp_path):
    """Issue 37, item 10: `plot --out` wrote the second experiment's figures over the first's (and a '/' in the
    recorded name nested folders): figures go by the experiment's folder."""
    import yaml

    for folder in ("a", "b"):
        exp = write_experiment(tmp_path / "results", name=folder)
        meta = yaml.safe_load((exp / "experiment.yaml").read_text())
        meta["config"]["name"] = "same"  # (a name with '/' is refused where experiment.yaml is read)
        (exp / "experiment.yaml").write_text(yaml.safe_dump(meta))
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "results"), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["a", "b"]


def test_every_figure_a_family_module_draws_has_its_row_in_the_table():
    """A figure drawn but not in `FIGURES` is never rendered: the table lists each family module's figures."""
    import inspect

    from bnexp.plots import analyses, curves, landscape, probes, sweeps

    drawn = {
        f
        for module in (analyses, curves, landscape, probes, sweeps)
        for name, f in inspect.getmembers(module, inspect.isfunction)
        if f.__module__ == module.__name__ and not name.startswith("_")
    }
    assert len(drawn) == len(FIGURES) == len({k.build for k in FIGURES.values()})
    assert drawn == {k.build for k in FIGURES.values()}


def legend_texts(fig) -> list[str]:
    """Every text a reader reads as the name of a curve: legend entries (axes' and the figure's), row labels,
    titles and tick labels."""
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    texts = [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return [t for t in texts if t]


def norm_lines(fig) -> list[tuple[str, str]]:
    """(legend name without its lr and n, colour) of every line, band, dot or bar that has a legend name."""
    import re

    out = []
    for ax in fig.axes:
        for artist in ax.get_lines() + ax.collections + ax.patches:
            name = re.sub(r"(, lr [\d.e-]+)?( \(n=\d+[^)]*\))?$", "", str(artist.get_label()))
            if name and not name.startswith("_"):
                colour = artist.get_color() if isinstance(artist, Line2D) else artist.get_facecolor()
                colour = colour[0] if np.ndim(colour) == 2 else colour
                out.append((name, matplotlib.colors.to_hex(colour)))
    return out


def drawn_figures(exp):
    for name, kind in FIGURES.items():
        if kind.applies(exp):
            fig = kind.draw(exp)
            yield name, fig
            plt.close(fig)


def _grid_experiments(tmp_path):
    """The synthetic experiment as itself, as a batch-size sweep and as an init-scale sweep."""
    plain = find_experiments(write_experiment(tmp_path / "plain"))[0]
    sweep = find_experiments(write_experiment(tmp_path / "sweep"))[0]
    for r in sweep.runs:
        r.config["grid"] = {"batch_size": 2 if r.config["lr_multiplier"] == 5.0 else 8}
    return [plain, sweep]


def test_no_legend_names_a_run_and_each_norm_has_its_colour_in_every_figure(tmp_path):
    """Issue 33, item 4: a legend says 'BN, momentum 0.01', never a run id ('lenet5-bn-m0.01_lr1x'); a curve
    named by its norm alone is drawn in that norm's colour, in every figure."""
    from bnexp.plots import NORM_LABELS

    seen = 0
    for exp in _grid_experiments(tmp_path):
        ids = {x for r in exp.runs for x in (r.name, r.variant, r.tag) if "-" in x or "_" in x}
        for name, fig in drawn_figures(exp):
            texts = legend_texts(fig)
            assert texts, name
            assert not [t for t in texts for i in ids if i in t], name
            for norm, colour in norm_lines(fig):
                norm_name = next((n for n, lbl in NORM_LABELS.items() if lbl == norm), None)
                if norm_name is not None:
                    assert colour == NORM_COLORS[norm_name].lower(), (name, norm, colour)
                    seen += 1
    assert seen > 10


def test_curves_are_medians_over_seeds_with_each_seed_thin_beneath(tmp_path):
    """Issue 33, item 4: no mean curve through runs that left a plateau at different times: the thick line is the
    median of the seeds' values, each seed drawn thin beneath it."""
    from bnexp.plots.selection import lr_multipliers
    from bnexp.plots.style import label
    from bnexp.results import aligned

    exp = find_experiments(write_experiment(tmp_path))[0]
    fig = FIGURES["convergence"].draw(exp)
    acc = fig.axes[1]
    checked = 0
    for runs in exp.variants.values():
        median = [ln for ln in acc.get_lines() if ln.get_label() == label(exp, runs, len(lr_multipliers(exp)) > 1)]
        if len(runs) < 2 or len({r.course.outcome for r in runs}) > 1 or not median:
            continue
        _, values = aligned(runs, "evals", "test_acc")
        assert list(median[0].get_ydata()) == pytest.approx([float(np.median(v)) for v in values])
        thin = [ln for ln in acc.get_lines() if ln.get_color() == median[0].get_color() and ln.get_linewidth() < 1]
        assert len(thin) >= len(runs)
        checked += 1
    assert checked
    assert "median over seeds, each seed thin" in acc.get_title()
    plt.close(fig)


def test_convergence_draws_the_prediction_interval_its_consistency_claim_uses(tmp_path):
    """The article's run against ours: the figure draws what the verdict compares (not ± 1 sd), the 95 %
    prediction interval of one new run's mean over the article's epochs and the article's mean, and says so."""
    from bnexp import stats

    exp = find_experiments(write_experiment(tmp_path))[0]
    runs = next(r for v, r in exp.variants.items() if v.startswith("lenet5-bn") and len(r) > 1)
    exp.config["claims"] = [
        {
            "id": "c",
            "claim": "draw",
            "source": "s",
            "kind": "consistency",
            "registered": "2026-12-01",
            "quantity": "test_acc_at_epoch",
            "group": runs[0].variant,
            "expect": "consistent",
            "value": {1: 0.5, 2: 0.6},
            "figure": "convergence",
        }
    ]
    fig = FIGURES["convergence"].draw(exp)
    acc = fig.axes[1]
    assert "95 % prediction interval of one new run's mean over 1, 2 epochs" in acc.get_title()
    bars = [c for c in acc.collections if c.get_segments()]
    ours = [(r.evals[0].test_acc + r.evals[1].test_acc) / 2 for r in runs]
    pred = stats.prediction_interval(ours, 0.55)
    (low, high) = bars[0].get_segments()[0][:, 1]
    assert (low, high) == pytest.approx((pred.low, pred.high))
    stars = [line for line in acc.lines if line.get_marker() == "*"]
    assert [tuple(line.get_ydata()) for line in stars] == [pytest.approx((0.55,))]
    plt.close(fig)


def _with_claims(exp_dir):
    """The synthetic experiment with three claims: BN ahead (greater), BN at lr x1 and x5 alike (equivalent, margin
    0.05) and the article's epoch-1 accuracy a draw from ours (consistent)."""
    import yaml

    meta = yaml.safe_load((exp_dir / "experiment.yaml").read_text())
    common = {"source": "test article", "quantity": "final_test_acc", "figure": "convergence"}
    common |= {"kind": "diagnostic", "registered": "2026-12-01"}
    meta["config"]["claims"] = [
        {**common, "id": "bn-ahead", "claim": "BN ahead", "group": "lenet5-bn_lr1x", "expect": "greater",
         "versus": "lenet5_lr1x"},
        {**common, "id": "lr-alike", "claim": "alike", "group": "lenet5-bn_lr1x", "expect": "equivalent",
         "versus": "lenet5-bn_lr5x", "margin": 0.05, "margin_why": "a test's"},
        {**common, "id": "article-draw", "claim": "a draw", "group": "lenet5-bn_lr1x", "expect": "consistent",
         "quantity": "test_acc_at_epoch", "value": {1: 0.8859}},
    ]  # fmt: skip
    (exp_dir / "experiment.yaml").write_text(yaml.safe_dump(meta))
    return exp_dir


def test_claims_figure_has_a_row_per_claim_coloured_by_verdict_with_the_equivalence_margin(tmp_path):
    """Issue 33, item 4: the report's table at a glance: one row per claim, its effect and the interval its
    verdict uses on the row's own scale, coloured by verdict, the margin of an equivalence drawn."""
    from bnexp.claims import claim_rows
    from bnexp.plots.forest import VERDICT_COLORS, claims_figure, forest_row

    experiments = find_experiments(_with_claims(write_experiment(tmp_path)))
    rows = claim_rows(experiments)
    fig = claims_figure(experiments)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{r.id} (diagnostic)" for r in rows]
    claims = {c.id: c for c in experiments[0].claims}
    for y, row in enumerate(rows, start=1):  # row 0: the experiment's name
        drawn = forest_row(row, claims[row.id])
        at_row = [ln for ln in ax.get_lines() if len(ln.get_ydata()) and set(ln.get_ydata()) == {y}]
        colour = VERDICT_COLORS[drawn.verdict]
        interval = next(ln for ln in at_row if ln.get_color() == colour and len(ln.get_xdata()) == 2)
        lo, hi = sorted(interval.get_xdata())
        assert lo <= next(ln for ln in at_row if ln.get_marker() == "o").get_xdata()[0] <= hi
        assert max(abs(lo), abs(hi)) <= 1 + 1e-9  # the row's own scale
        margins = [ln for ln in at_row if ln.get_linewidth() == 5]
        assert bool(margins) == (row.id == "lr-alike")
    assert drawn.interval is not None and np.isfinite(drawn.interval).all()
    assert forest_row(rows[1], claims["lr-alike"]).interval == rows[1].decision.interval90  # TOST's, as decided
    assert f"{len(rows)} claims" in fig._suptitle.get_text()
    plt.close(fig)


def test_plot_writes_the_claims_figure_beside_the_experiments(tmp_path):
    _with_claims(write_experiment(tmp_path / "results"))
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "claims.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_size_right_panel_zooms_in_on_the_sizes_where_every_norm_trained(tmp_path):
    """Issue 33: the right panel repeated the left as accuracy; it now zooms in on the batch sizes where every
    norm's seeds trained, which the left panel's error axis flattens."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    for r in exp.runs:  # lenet5 at lr x5 never trains: batch 2; the rest at 4 and 8
        stuck = r.config["lr_multiplier"] == 5.0 and r.config["model"]["norm"] == "none"
        r.config["grid"] = {"batch_size": 2 if stuck else 4 if r.config["seed"] == 0 else 8}
    fig = FIGURES["batch_size"].draw(exp)
    err, zoom = fig.axes
    assert zoom.get_title().startswith("zoom: batch sizes 4–8")
    assert zoom.get_xlim()[0] > 2 and np.ptp(zoom.get_ylim()) < np.ptp(err.get_ylim())
    assert "accuracy" not in zoom.get_ylabel()
    plt.close(fig)


def test_lr_ticks_are_the_lrs_run_and_histograms_share_one_y_scale(tmp_path):
    """No log-axis minor labels colliding ('3×10⁻¹4×10⁻¹'): a tick at each learning rate run; the histogram
    panels, compared with each other and with N(0, 1), share one density axis."""
    exp = find_experiments(write_experiment(tmp_path))[0]
    fig = FIGURES["learning_rate"].draw(exp)
    summary = fig.axes[-1]
    assert [t.get_text() for t in summary.get_xticklabels()] == ["0.01", "0.05"]
    assert not summary.xaxis.get_minorticklocs().size
    plt.close(fig)
    fig = FIGURES["feature_distribution"].draw(exp)
    assert len({ax.get_ylim() for ax in panels(fig)}) == 1
    plt.close(fig)


@pytest.mark.parametrize("name", ["eval_mode", "whitening"])
def test_committed_figures_name_models_in_words(name):
    """The committed runs whose configs label models with run-name ids ('lenet5-bn-m0.01', 'lenet5-dbn64'):
    every figure names them in words ('BN, momentum 0.01'), each norm in its colour, no panel empty."""
    from bnexp.plots import NORM_LABELS

    from .conftest import REPO

    exp = find_experiments(REPO / "results" / name)[0]
    ids = {x for r in exp.runs for x in (r.name, r.variant, r.tag) if "-" in x or "_" in x}
    assert any(r.model.get("label") for r in exp.runs)  # what the legends printed before

    for figure, fig in drawn_figures(exp):
        assert not [t for t in legend_texts(fig) for i in ids if i in t], figure
        for norm, colour in norm_lines(fig):
            norm_name = next((n for n, lbl in NORM_LABELS.items() if lbl == norm), None)
            assert norm_name is None or colour == NORM_COLORS[norm_name].lower(), (figure, norm)
        assert all(ax.has_data() for ax in fig.axes if ax.get_visible()), figure
    if name == "eval_mode":
        fig = FIGURES["eval_modes"].draw(exp)
        assert "BN, momentum 0.01 (n=8)" in legend_texts(fig)
        plt.close(fig)
