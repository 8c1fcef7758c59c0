"""Reading results back: experiments and runs from the run store, grouped by variant, averaged over seeds.

Plots, reports and `bnexp list` read only files through this module; nothing here trains or needs a GPU.
A damaged file never stops a reader: the run (or experiment) is left out with a warning that names the file.
Only the runs of the experiment's current plan (experiment.yaml) whose recorded configs agree with it are
grouped; the others are listed in `left_out` with the reason.
"""

from __future__ import annotations

import math
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

from bnexp import records, sequential
from bnexp.config import (
    DATASET_CLASSES,
    NOT_COMPARED,
    ClaimConfig,
    ExperimentConfig,
    config_diff,
    expand_grid,
    from_dict,
    interim_looks_fit,
)
from bnexp.errors import BnexpError
from bnexp.lock import holder
from bnexp.store import (
    ANALYSES_DIR,
    EXPERIMENT_FILE,
    FINISHED,
    METRICS,
    PROBES,
    SUMMARY,
    CorruptFile,
    RunDir,
    parse_json,
    read_experiment_meta,
    read_regular,
)

REFERENCES_FILE = "references.json"  # the series a config's reference names, copied by `bnexp run`
CHANCE_MARGIN = 0.9  # a run has left chance once a logged training loss is below 0.9 x ln(classes)
NEAR_CHANCE = ("never_left_chance", "fell_back")  # the outcomes of runs that end near chance
RUNNING, NOT_STARTED = "running", "not started"  # what `bnexp list` shows beside the recorded statuses
Warn = Callable[[str], None]
P = TypeVar("P", bound=records.Record)
R = TypeVar("R", bound=records.Record)


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Course:
    """What happened to a run (`training_course`); a summary records these three fields."""

    left_chance_step: int | None
    outcome: str
    not_training: bool


def training_course(
    train: list[records.TrainRecord], classes: int, diverged: bool, status: str = "completed"
) -> Course:
    """What happened to a run, from its logged training losses (means over `log_every` steps):

    left_chance_step: the first logged step whose loss is below 0.9 ln(classes), or None;
    outcome: diverged | never_left_chance | fell_back (left chance, and the last logged loss is above that
    line again: the net trained, then died) | trained; for a run that has not finished (`status` neither
    completed nor diverged) interrupted (status interrupted) or unfinished (failed, running, no summary yet):
    a part of a run is no result, whatever its losses so far;
    not_training: never left chance (and did not diverge).
    """
    line = CHANCE_MARGIN * math.log(classes)
    left = next((r.step for r in train if r.loss is not None and r.loss < line), None)
    final = train[-1].loss if train else None
    if status not in FINISHED and not diverged:
        outcome = "interrupted" if status == "interrupted" else "unfinished"
    elif diverged:
        outcome = "diverged"
    elif left is None:
        outcome = "never_left_chance"
    elif final is None or final >= line:
        outcome = "fell_back"
    else:
        outcome = "trained"
    return Course(left, outcome, outcome == "never_left_chance")


@dataclass
class Run:
    """One run's files, read once."""

    dir: RunDir
    config: dict[str, Any]
    summary: records.Summary
    evals: list[records.EvalRecord]
    train: list[records.TrainRecord]
    probe_records: list[records.Record]  # each as its kind's model (records.PROBES)
    analyses: dict[str, records.Record] = field(default_factory=dict)  # name -> its result (records.ANALYSES)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def variant(self) -> str:
        return re.sub(r"_s\d+$", "", self.name)

    @property
    def model(self) -> dict[str, Any]:
        return self.config.get("model") or {}

    @property
    def tag(self) -> str:
        """The variant without its learning rate (and without grid values)."""
        return self.variant.rsplit("_lr", 1)[0]

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def grid(self) -> dict[str, Any]:
        return self.config.get("grid") or {}

    @property
    def probes(self) -> list[records.DistributionProbe]:
        """Activation-distribution records (the probes.jsonl lines without a `probe` kind)."""
        return self.probe(records.DistributionProbe)

    def probe(self, kind: type[P]) -> list[P]:
        """The records of one probe kind, `kind` its model in records.PROBES."""
        if kind not in records.PROBES.values():
            raise KeyError(f"{kind.__name__} is not a probe's model (records.PROBES)")
        return [p for p in self.probe_records if isinstance(p, kind)]

    def analysis(self, model: type[R]) -> R | None:
        """The result of one of the run's analyses, `model` its model in records.ANALYSES; None where the run has
        none of that analysis."""
        name = next((name for name, m in records.ANALYSES.items() if m is model), None)
        if name is None:
            raise KeyError(f"{model.__name__} is not an analysis' model (records.ANALYSES)")
        return cast(R | None, self.analyses.get(name))  # read as `model` (records.read_analysis)

    @property
    def course(self) -> Course:
        """left_chance_step, outcome, not_training (recomputed from the logs, also for older runs); an unfinished
        run's outcome is interrupted or unfinished."""
        dataset = (self.config.get("dataset") or {}).get("name")
        classes = self.summary.num_classes or DATASET_CLASSES.get(dataset, 10)
        # diverged by its status: its step may not be recorded
        return training_course(self.train, classes, self.status == "diverged", self.status)


@dataclass
class Experiment:
    name: str
    dir: Path
    meta: dict[str, Any]  # experiment.yaml: config, runs, data, provenance
    runs: list[Run]  # the current plan's runs that agree with it, in plan order
    variants: dict[str, list[Run]] = field(default_factory=dict)  # in plan order
    left_out: list[str] = field(default_factory=list)  # "<run>: why"
    not_started: list[str] = field(default_factory=list)  # the plan's runs with no run folder yet, in plan order

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    def finished(self, variant: str | None) -> list[Run]:
        """A variant's runs that are results (completed or diverged): a part of a run is measured by nothing."""
        return [r for r in self.variants.get(variant or "", []) if r.status in FINISHED]

    @property
    def reference(self) -> dict[str, Any] | None:
        return self.config.get("reference")

    @property
    def claims(self) -> list[ClaimConfig]:
        """The claims recorded in experiment.yaml, checked by the rules a config's claims obey (none, with a
        warning, if they break one: a claim without what it compares with would fail deep inside the report)."""
        where = f"{self.dir / EXPERIMENT_FILE}: claims"
        try:
            return from_dict(list[ClaimConfig], self.config.get("claims") or [], where)
        except BnexpError as e:
            warn_stderr(f"{e}; its claims are left out of the report")
            return []

    @property
    def multiplicity(self) -> str:
        """holm or none (bnexp.records checked the value when experiment.yaml was read; an older one has none)."""
        return self.config.get("multiplicity") or "holm"

    @property
    def runs_began(self) -> str | None:
        """The day (YYYY-MM-DD) the experiment's runs began: the earliest start in its run files, or the config's
        `runs_began` where earlier runs, replaced since, began before those."""
        days = [r.summary.started[:10] for r in self.runs if r.summary.started]
        if recorded := self.config.get("runs_began"):
            days.append(str(recorded))
        return min(days, default=None)

    @property
    def interim_looks(self) -> list[int]:
        """The seed counts at which the claims were looked at before more seeds ran (schema-checked; none, with a
        warning, if they do not parse)."""
        try:
            looks = from_dict(
                list[int], self.config.get("interim_looks") or [], f"{self.dir / EXPERIMENT_FILE}: interim_looks"
            )
        except BnexpError as e:
            warn_stderr(f"{e}; the report leaves them out")
            return []
        if not interim_looks_fit(looks, len(self.config.get("seeds") or [])):
            warn_stderr(
                f"{self.dir / EXPERIMENT_FILE}: interim_looks {looks} are not increasing seed counts below "
                "the seeds'; the report leaves them out"
            )
            return []
        return looks

    @cached_property
    def look_levels(self) -> list[float]:
        """The two-sided nominal level at each look, the last one's deciding the verdicts: the group-sequential
        boundary for the looks recorded (bnexp.sequential), 5 % without earlier looks."""
        if not (looks := self.interim_looks):
            return [sequential.LEVEL]
        return sequential.nominal_levels([*looks, len(self.config["seeds"])])

    def reference_series(self) -> dict[str, list[records.SeriesRecord]]:
        """variant -> the author's curves ({key, quantity, values, source, ...}), from references.json."""
        path = self.dir / REFERENCES_FILE
        if not path.is_file():
            return {}
        try:
            return records.read_series(path, parse_json(read_regular(path, follow=False)))
        except (OSError, ValueError, CorruptFile) as e:
            warn_stderr(f"{path}: unreadable ({e}); no reference series")
            return {}


UNFINISHED_DROPS = (
    "final_test_acc",
    "final_test_loss",
    "best_test_acc",
    "final_train_acc",
    "final_train_loss",
    "final_generalization_gap",
    "time_to_threshold",
    "final_dead_units",
)


def load_run(run_dir: RunDir) -> Run:
    """All of a run's files; CorruptFile if one of them does not parse."""
    analyses = {}
    folder = run_dir.path / ANALYSES_DIR
    if folder.is_symlink():
        raise CorruptFile(f"{folder}: a link; files of a results folder are read only where they are")
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            analyses[p.stem] = records.read_analysis(p, p.stem, parse_json(read_regular(p, follow=False)))
        except (OSError, ValueError, CorruptFile) as e:
            raise CorruptFile(f"{p}: unreadable ({e}); redo it with bnexp analyze --force") from None
    train, evals = records.read_metrics(run_dir.path / METRICS, run_dir.metrics())
    probe_records = run_dir.probes()
    recorded = run_dir.summary() or {"status": "unfinished"}
    if recorded["status"] not in FINISHED:  # an unfinished run's accuracies are not results
        recorded = {k: v for k, v in recorded.items() if k not in UNFINISHED_DROPS}
    summary = records.read(recorded, records.Summary, str(run_dir.path / SUMMARY))
    if summary.status == "diverged":  # a diverged net's activations are NaN (null): nothing to measure
        probe_records = [p for p in probe_records if not _nan_distribution(p)]
    probes = records.read_probes(run_dir.path / PROBES, probe_records)
    if summary.status == "completed" and not train:
        # no outcome can be read from no log: the run is damaged, not one that never left chance
        raise CorruptFile(f"{run_dir.path / METRICS}: a completed run without its training log")
    config = run_dir.config()
    records.check_run_config(run_dir.path / "config.yaml", config)
    return Run(
        dir=run_dir,
        config=config,
        summary=summary,
        evals=evals,
        train=train,
        probe_records=probes,
        analyses=analyses,
    )


def _nan_distribution(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and record.get("probe", "distribution") == "distribution"
        and (record.get("mean") is None or record.get("std") is None)
    )


def _expected_configs(meta: dict[str, Any], where: str) -> dict[str, dict[str, Any]] | None:
    """run name -> the resolved config the current plan expects (None if the plan cannot be rebuilt)."""
    # claims and looks change no run (and are checked where they are read): a bad one must not switch this off
    config = {k: v for k, v in meta["config"].items() if k not in NOT_COMPARED}
    try:
        cfg = from_dict(ExperimentConfig, config, where)
    except BnexpError:
        return None
    return {p.name: p.resolved() for p in expand_grid(cfg)}


def load_experiment(path: Path, warn: Warn = warn_stderr) -> Experiment:
    meta = read_experiment_meta(path)
    records.check_experiment_meta(path / EXPERIMENT_FILE, meta)
    plan = list(meta.get("runs") or [])
    expected = _expected_configs(meta, str(path / EXPERIMENT_FILE))
    runs, left_out, recorded = [], [], set()
    for child in sorted(p for p in path.iterdir() if p.is_dir() and p.name not in ("figures",)):
        if child.is_symlink():  # nothing read from a results folder leaves it
            left_out.append(f"{child.name}: a link, not a run folder (not read)")
            recorded.add(child.name)
            continue
        run_dir = RunDir(child)
        if not (child / "config.yaml").is_file():
            continue
        recorded.add(child.name)
        if child.name not in plan:
            left_out.append(f"{child.name}: not in the experiment's current plan (seeds or settings since changed)")
            continue
        try:
            run = load_run(run_dir)
        except CorruptFile as e:
            if being_trained(child):  # a log's last line half written: nothing is damaged
                left_out.append(f"{child.name}: being trained (its files are being written)")
                continue
            warn(f"{e}; left out (start it over with bnexp run CONFIG --restart-run {child.name})")
            left_out.append(f"{child.name}: damaged files")
            continue
        diff = config_diff(run.config, expected[child.name]) if expected and child.name in expected else []
        if diff:
            left_out.append(f"{child.name}: recorded with other settings ({'; '.join(diff[:3])})")
            continue
        runs.append(run)
    order = {name: i for i, name in enumerate(plan)}
    runs.sort(key=lambda r: order[r.name])
    not_started = [n for n in plan if _plain_name(n) and n not in recorded]
    exp = Experiment(
        name=meta["config"]["name"], dir=path, meta=meta, runs=runs, left_out=left_out, not_started=not_started
    )
    for run in runs:
        exp.variants.setdefault(run.variant, []).append(run)
    return exp


def _plain_name(name: Any) -> bool:
    """A plan's run name that names a folder inside the experiment's (experiment.yaml may come from anyone)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def being_trained(folder: Path) -> bool:
    """Whether a process holds this run folder's lock now (bnexp.lock.holder: opens the lock file read-only if
    there is one, creates and writes nothing, follows no link)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        return holder(folder) is not None
    except OSError:  # a lock file that is no file: nobody's lock
        return False


def run_states(exp: Experiment) -> list[tuple[str, Run | None, str]]:
    """Each run of the experiment's plan, in plan order, as `bnexp list` shows it: (name, its Run or None, state).
    The state is the recorded status (completed, diverged, interrupted, failed, unfinished), `running` while a
    process trains it (holds its lock), `not started` where the plan's run has no folder yet. Runs left out of
    the experiment (damaged, recorded with other settings, links) are not listed, unless they are being trained."""
    by_name = {r.name: r for r in exp.runs}
    out = []
    for name in exp.meta.get("runs") or []:
        if not _plain_name(name):
            continue
        run = by_name.get(name)
        state = run.status if run else NOT_STARTED if name in exp.not_started else None
        if state not in FINISHED and being_trained(exp.dir / name):
            state = RUNNING
        if state is not None:
            out.append((name, run, state))
    return out


def experiment_dirs(path: str | Path) -> list[Path]:
    """An experiment directory, or the experiment directories in a results directory."""
    path = Path(path)
    if not path.is_dir():
        raise BnexpError(f"{path}: no such results directory")
    if (path / EXPERIMENT_FILE).is_file():
        return [path]
    found = []
    for p in sorted(path.iterdir()):
        if (p / EXPERIMENT_FILE).is_file():
            if p.is_symlink():  # nothing read from a results folder leaves it
                warn_stderr(f"{p}: a link to an experiment folder; not read (results are read only where they are)")
                continue
            found.append(p)
    if not found:
        raise BnexpError(f"{path}: no experiments here (looked for */{EXPERIMENT_FILE}); run `bnexp run` first")
    return found


def find_experiments(path: str | Path, warn: Warn = warn_stderr) -> list[Experiment]:
    """Every readable experiment under `path`; a damaged experiment.yaml is skipped with a warning."""
    out = []
    for d in experiment_dirs(path):
        try:
            out.append(load_experiment(d, warn))
        except CorruptFile as e:
            warn(f"{e}; experiment left out (running its config again rewrites it)")
    return out


def mean_sd(values: list[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count, ignoring missing values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def aligned(runs: list[Run], kind: str, key: str, x: str = "step") -> tuple[list[float], list[list[float]]]:
    """The x values common to all runs' records of one `kind` ("evals" or "train") and, per x, the runs' `key`
    values (fields of the records' model: a misspelt one raises AttributeError)."""
    per_run = [{getattr(r, x): getattr(r, key) for r in getattr(run, kind)} for run in runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return [], []
    xs = sorted(set.intersection(*(set(p) for p in per_run)))
    return xs, [[p[v] for p in per_run] for v in xs]


def value_at(run: Run, key: str, epoch: float | None = None, step: int | None = None) -> float | None:
    """An eval record's `key` at an epoch or a step, or None if the run has no evaluation there."""
    for r in run.evals:
        if (epoch is not None and abs(r.epoch - epoch) < 1e-9) or (step is not None and r.step == step):
            return getattr(r, key)
    return None


def status_counts(runs: list[Run]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status] += 1
        if run.course.not_training:
            counts["never left chance"] += 1
        elif run.course.outcome == "fell_back":
            counts["fell back to chance"] += 1
    return dict(counts)


# -- loss curves: the same smoothing for our logged windows and the author's per-step series --------------

SMOOTH_STEPS = 20  # non-overlapping windows of 20 steps (steps 1-20, 21-40, ...)


def per_step(train: list[records.TrainRecord]) -> list[float | None]:
    """A per-step loss series from logged window means (each window's mean stands for each of its steps)."""
    out: list[float | None] = []
    for r in train:
        start = r.step - r.steps
        out += [None] * (start - len(out)) + [r.loss] * (r.step - start)
    return out


def windowed(series: list[float | None], width: int = SMOOTH_STEPS) -> list[tuple[int, float]]:
    """(last step, mean) of each complete `width`-step window with values."""
    out = []
    for end in range(width, len(series) + 1, width):
        chunk = [v for v in series[end - width : end] if v is not None]
        if len(chunk) == width:
            out.append((end, statistics.fmean(chunk)))
    return out


def curve_quantities(
    series: list[float | None], steps_per_epoch: int | None, thresholds=(2.0, 1.0, 0.5), classes: int = 10
) -> dict[str, Any]:
    """Numbers that suit a loss curve, on 20-step window means: the first step each threshold is reached, the
    mean loss of the last epoch (last 20-step window without epochs), the lowest window, and the course."""
    windows = windowed(series)
    out: dict[str, Any] = {
        f"steps_to_loss_below_{t:g}": next((s for s, v in windows if v < t), None) for t in thresholds
    }
    tail = [v for v in series[-(steps_per_epoch or SMOOTH_STEPS) :] if v is not None]
    out["final_loss"] = statistics.fmean(tail) if tail else None
    out["min_loss"] = min((v for _, v in windows), default=None)
    line = CHANCE_MARGIN * math.log(classes)
    left = next((s for s, v in windows if v < line), None)
    back = windows and windows[-1][1] >= line
    out["outcome"] = "never_left_chance" if left is None else "fell_back" if back else "trained"
    return out
