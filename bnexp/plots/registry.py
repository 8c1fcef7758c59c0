"""The one table of figures: each kind's name (its file name), what in an experiment's finished runs calls for it,
and the function that draws it; `render` walks it. A new kind of experiment adds a row here and its drawing to
the family module it belongs to, never a per-config script."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bnexp.plots import analyses, curves, forest, landscape, probes, sweeps
from bnexp.plots.selection import finished_only, several_lrs_per_model
from bnexp.records import PROBES
from bnexp.results import Experiment
from bnexp.store import atomic_file, real_dir


@dataclass(frozen=True)
class FigureKind:
    """A figure: whether an experiment's runs call for it (`fits`), and what draws it (`build`). Both see the
    finished runs only (completed or diverged), as `applies` and `draw` hand them over."""

    fits: Callable[[Experiment], bool]
    build: Callable[[Experiment], Figure]

    def applies(self, exp: Experiment) -> bool:
        """The figure fits the experiment's finished runs (none finished: no figure)."""
        drawn = finished_only(exp)
        return bool(drawn.runs) and self.fits(drawn)

    def draw(self, exp: Experiment) -> Figure:
        return self.build(finished_only(exp))


def _configured_probes(key: str) -> Callable[[Experiment], bool]:
    """The config asks for probes at `key` (at_epochs, every_steps)."""
    return lambda exp: bool((exp.config.get("probes") or {}).get(key))


def _probed(kind: str) -> Callable[[Experiment], bool]:
    """Some run recorded probes of this kind."""
    return lambda exp: any(r.probe(PROBES[kind]) for r in exp.runs)


def _analysed(analysis: str) -> Callable[[Experiment], bool]:
    """Some run has the result of this post-training analysis."""
    return lambda exp: any(analysis in r.analyses for r in exp.runs)


def _drifting_layers(exp: Experiment) -> bool:
    """Probes over training of several variants, where the landscape figure does not already show them."""
    return _configured_probes("every_steps")(exp) and len(exp.variants) > 1 and not _probed("landscape")(exp)


# In this order each experiment's figures are drawn (and listed by `bnexp plot`).
FIGURES: dict[str, FigureKind] = {
    "convergence": FigureKind(
        lambda exp: any(r.evals for r in exp.runs) and not any(r.grid for r in exp.runs), curves.convergence
    ),
    "learning_rate": FigureKind(several_lrs_per_model, curves.learning_rate),
    "feature_distribution": FigureKind(_configured_probes("at_epochs"), probes.feature_distribution),
    "percentiles": FigureKind(_configured_probes("every_steps"), probes.percentiles),
    "generalization": FigureKind(
        lambda exp: any(r.evals and r.evals[-1].train_acc is not None for r in exp.runs), curves.generalization
    ),
    "batch_size": FigureKind(
        lambda exp: len({r.grid["batch_size"] for r in exp.runs if "batch_size" in r.grid}) > 1, sweeps.batch_size
    ),
    "init_scale": FigureKind(
        lambda exp: len({r.model.get("init_std") for r in exp.runs} - {None}) > 1, sweeps.init_scale
    ),
    "long_sequences": FigureKind(_analysed("long_sequences"), analyses.long_sequences),
    "step_cost": FigureKind(_analysed("step_cost"), analyses.step_cost),
    "eval_modes": FigureKind(_analysed("eval_modes"), analyses.eval_modes),
    "landscape": FigureKind(_probed("landscape"), landscape.landscape),
    "ics": FigureKind(_probed("ics"), landscape.ics),
    "distribution_drift": FigureKind(_drifting_layers, probes.distribution_drift),
    "scale_invariance": FigureKind(
        lambda exp: _analysed("scale_invariance")(exp) or _probed("weights")(exp), analyses.scale_invariance
    ),
    "data_parallel": FigureKind(lambda exp: any("processes" in r.grid for r in exp.runs), curves.data_parallel),
}


def render_claims(experiments: list[Experiment], out_dir: Path, fmt: str = "png", root: Path | None = None) -> Path:
    """The claims figure of all `experiments` (the report's table at a glance), written to out_dir/claims.<fmt>."""
    real_dir(root if root is not None else out_dir.parent, out_dir)
    fig = forest.claims_figure(experiments)
    path = out_dir / f"claims.{fmt}"
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format=fmt, bbox_inches="tight")
    plt.close(fig)
    return path


def render(exp: Experiment, out_dir: Path, fmt: str = "png", root: Path | None = None) -> list[Path]:
    """Every figure that applies to `exp`, written to out_dir/<figure>.<fmt> (atomically: a link planted at a
    figure's name is replaced, never written through; out_dir is checked to be a real folder below `root`)."""
    real_dir(root if root is not None else out_dir.parent, out_dir)
    written = []
    for name, kind in FIGURES.items():
        if kind.applies(exp):
            fig = kind.draw(exp)
            path = out_dir / f"{name}.{fmt}"
            with atomic_file(path, "wb") as f:
                fig.savefig(f, format=fmt, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written
