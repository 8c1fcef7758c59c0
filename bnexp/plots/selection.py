"""Which runs a figure draws, and what its title says of them: finished runs only (completed or diverged), the
groups figures draw them in, and the run counts, seeds and grid cells the runs themselves show."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from bnexp.results import FINISHED, Experiment, Run
from bnexp.wording import plural


@dataclass
class Drawn(Experiment):
    """An experiment as its figures show it: its finished runs only; `unfinished` names the runs left out."""

    unfinished: list[str] = field(default_factory=list)


def finished_only(exp: Experiment) -> Experiment:
    """`exp` without its unfinished runs (interrupted, failed, running): a part of a run is no result, and would
    set a panel's smoothing window and the run counts. `exp` itself where every run finished."""
    if isinstance(exp, Drawn):
        return exp
    unfinished = [r.name for r in exp.runs if r.status not in FINISHED]  # the variants group these same runs
    if not unfinished:
        return exp
    fields = {f.name: getattr(exp, f.name) for f in dataclasses.fields(exp)}
    fields["runs"] = [r for r in exp.runs if r.status in FINISHED]
    fields["variants"] = {v: done for v in exp.variants if (done := exp.finished(v))}
    return Drawn(**fields, unfinished=unfinished)


def mixed_outcomes(runs: list[Run]) -> bool:
    """Runs of one cell that ended differently (trained / fell back / never left chance / diverged): a mean
    over them describes no run, so they are drawn one by one."""
    return len({r.course.outcome for r in runs}) > 1


def reference_loss_curves(exp: Experiment) -> dict[str, list[float]]:
    """variant -> the author's per-step loss history, where the config names one."""
    return {
        variant: ref.values
        for variant, refs in exp.reference_series().items()
        for ref in refs
        if ref.quantity == "train_loss_per_step"
    }


def lr_multipliers(exp: Experiment) -> list[float]:
    return sorted({r.config["lr_multiplier"] for r in exp.runs})


def finish(fig: Figure, exp: Experiment, title: str) -> Figure:
    """The figure's title, and under it the runs it draws and those it leaves out."""
    fig.suptitle(f"{title}\n{ran(exp)}{not_drawn(exp)}", fontsize=11)
    return fig


def not_drawn(exp: Experiment) -> str:
    """A line naming the unfinished runs the figure leaves out ('' where there are none)."""
    names = exp.unfinished if isinstance(exp, Drawn) else []
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"\n{plural(len(names), 'unfinished run')} not drawn ({shown}): see bnexp list"


def ran(exp: Experiment) -> str:
    """What the figure's runs are, from the runs themselves (not from what the config once planned)."""
    seeds = sorted({r.config.get("seed") for r in exp.runs if r.config.get("seed") is not None})
    grid: dict[str, set] = {}
    for r in exp.runs:
        for k, v in r.grid.items():
            grid.setdefault(k, set()).add(str(v))
    cells = "; ".join(f"{k} {', '.join(sorted(v, key=lambda x: (len(x), x)))}" for k, v in grid.items())
    seed_text = (
        f"seed {seeds[0]}"
        if len(seeds) == 1
        else f"seeds {seeds[0]}–{seeds[-1]}"
        if seeds == list(range(seeds[0], seeds[-1] + 1))
        else f"seeds {', '.join(map(str, seeds))}"
    )
    return (
        f"{plural(len(exp.runs), 'run')}, {plural(len(exp.variants), 'variant')}"
        + (f"; {cells}" if cells else "")
        + f"; {seed_text}"
    )


def steps_per_epoch(exp: Experiment) -> int | None:
    for run in exp.runs:
        if run.summary.steps_per_epoch:
            return run.summary.steps_per_epoch
    return None


def log_every(exp: Experiment) -> int:
    return int(exp.config.get("log_every", 1))


def several_lrs_per_model(exp: Experiment) -> bool:
    """Some model ran at more than one learning rate, outside any grid (E4; E2 within it)."""
    lrs: dict[str, set] = {}
    for r in exp.runs:
        lrs.setdefault(r.tag, set()).add(r.config["lr"])
    return not any(r.grid for r in exp.runs) and any(len(v) > 1 for v in lrs.values())


def model_groups(exp: Experiment) -> dict[str, list[Run]]:
    """Runs by model (the variant without grid values, lr and seed)."""
    out: dict[str, list[Run]] = {}
    for run in exp.runs:
        out.setdefault(run.summary.model or run.tag, []).append(run)
    return out
