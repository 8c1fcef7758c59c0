"""Run files to the viewers people already use: a tidy CSV table (pandas, R, a spreadsheet) and TensorBoard event
files. Reads the run store only (through `bnexp.results`, so damaged runs are skipped with a warning, as in
`plot` and `report`); writes only into the folder it is given.

CSV (`metrics.csv`): one row per logged value: experiment, run, model, norm, activation, lr, batch_size, grid
(the run's grid values as key=value;...), seed, step, epoch, metric, value. `runs.csv`: one row per run with its
variant keys and its summary's numbers. TensorBoard: one event folder per run, `<experiment>/<run>/`, with every
logged metric as a scalar (train/loss, test/acc, ...), each distribution probe as a histogram
(`activations/layer<N>`), and the resolved config as text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bnexp.errors import BnexpError
from bnexp.results import Experiment, Run
from bnexp.store import atomic_file, real_dir

KEYS = ("experiment", "run", "model", "norm", "activation", "lr", "batch_size", "grid", "seed")
SUMMARY_NUMBERS = (
    "status",
    "outcome",
    "steps",
    "epochs",
    "final_test_acc",
    "best_test_acc",
    "final_test_loss",
    "final_train_loss",
    "final_train_acc",
    "left_chance_step",
    "final_dead_units",
    "train_time_s",
    "eval_time_s",
    "images_per_s",
)


def variant_keys(exp: Experiment, run: Run) -> dict[str, Any]:
    model = run.model
    return {
        "experiment": exp.name,
        "run": run.name,
        "model": run.summary.model or run.tag,
        "norm": model.get("norm"),
        "activation": model.get("activation"),
        "lr": run.config.get("lr"),
        "batch_size": run.config.get("batch_size"),
        "grid": ";".join(f"{k}={v}" for k, v in run.grid.items()),
        "seed": run.config.get("seed"),
    }


def metric_rows(run: Run) -> Iterator[tuple[int, float | None, str, float]]:
    """(step, epoch, metric, value) for every number the run logged: train/<key> and test|train/<key> of
    evaluations (dead units included), and the per-layer lists as metric[i]."""
    for record in run.train:
        if record.loss is not None:
            yield record.step, record.epoch, "train/loss", record.loss
    for record in run.evals:
        # the fields recorded (declared ones in the order the trainer writes them, then any others): a newer
        # trainer's numbers are exported too
        for key, value in record.model_dump(exclude_unset=True).items():
            if key in ("event", "step", "epoch"):
                continue
            name = key.replace("_", "/", 1) if key.startswith(("test_", "train_")) else key
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield record.step, record.epoch, name, value
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        yield record.step, record.epoch, f"{name}[{i}]", v


def spreadsheet_safe(row: list[Any]) -> list[Any]:
    """Text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first; numbers aside) is quoted with
    a leading "'": run and experiment names come from a results folder that may be someone else's."""

    def formula(v: Any) -> bool:
        if not isinstance(v, str) or v[:1] not in ("=", "+", "-", "@", "\t", "\r"):
            return False
        try:
            float(v)
        except ValueError:
            return True
        return False

    return [f"'{v}" if formula(v) else v for v in row]


def to_csv(experiments: list[Experiment], out: Path) -> list[Path]:
    real_dir(out.parent, out)
    metrics, runs = out / "metrics.csv", out / "runs.csv"
    with atomic_file(metrics) as f:
        writer = csv.writer(f)
        writer.writerow([*KEYS, "step", "epoch", "metric", "value"])
        for exp in experiments:
            for run in exp.runs:
                keys = list(variant_keys(exp, run).values())
                for step, epoch, metric, value in metric_rows(run):
                    writer.writerow(spreadsheet_safe([*keys, step, epoch, metric, repr(float(value))]))
    with atomic_file(runs) as f:
        writer = csv.writer(f)
        writer.writerow([*KEYS, *SUMMARY_NUMBERS])
        for exp in experiments:
            for run in exp.runs:
                summary = {
                    **run.summary.model_dump(),
                    "outcome": run.course.outcome,
                    "left_chance_step": run.course.left_chance_step,
                }
                row = [*variant_keys(exp, run).values(), *(summary.get(k) for k in SUMMARY_NUMBERS)]
                writer.writerow(spreadsheet_safe(row))
    return [metrics, runs]


EVENTS_SUFFIX = ".bnexp"  # marks the event files an export writes (another program's stay)


def require_tensorboard() -> None:
    """TensorBoard is optional: say how to add it (exit 2) before anything is written."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise BnexpError(
            "--tensorboard needs TensorBoard, which is optional: pip install tensorboard (into bnexp's environment, "
            "e.g. .venv/bin/pip install tensorboard; from a checkout, pip install -e '.[tensorboard]' also does)"
        ) from None


def to_tensorboard(experiments: list[Experiment], out: Path) -> list[Path]:
    import numpy as np

    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    real_dir(out.parent, out)
    written = []
    for exp in experiments:
        for run in exp.runs:
            # by folder, not by recorded name: a name may hold '/' or be another experiment's too
            folder = real_dir(out, out / exp.dir.name / run.dir.name)
            for old in folder.glob(f"events.out.tfevents.*{EVENTS_SUFFIX}"):  # an export replaces its own files
                if old.is_file() and not old.is_symlink():
                    old.unlink()
            with SummaryWriter(log_dir=str(folder), filename_suffix=EVENTS_SUFFIX) as writer:
                for step, _, metric, value in metric_rows(run):
                    writer.add_scalar(metric, float(value), step)
                for p in run.probes:
                    counts = np.asarray(p.hist, dtype=float)
                    lo, hi = exp.config["probes"]["range"]
                    edges = np.linspace(lo, hi, len(counts) + 1)
                    squares = (p.std**2 + p.mean**2) * p.n
                    writer.add_histogram_raw(
                        f"activations/layer{p.layer + 1}",
                        min=lo if p.min is None else p.min,  # older runs recorded no min and max
                        max=hi if p.max is None else p.max,
                        num=int(counts.sum()),
                        sum=p.mean * p.n,
                        sum_squares=squares,
                        bucket_limits=edges[1:].tolist(),
                        bucket_counts=counts.tolist(),
                        global_step=p.step,
                    )
                writer.add_text("config", "```\n" + json.dumps(run.config, indent=1, default=str) + "\n```", 0)
            written.append(folder)
    return written
