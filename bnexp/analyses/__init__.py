"""Post-training analyses: read a finished run's final weights (weights.pt, `keep_final_weights: true`), write
their results into the run directory (`<run>/analyses/<name>.json`), skip what is already done.

eval_modes: accuracy under each way a normalized model can be evaluated (a2's pitfalls, re-estimated
statistics); scale_invariance: BN's invariance to the scale of the preceding weights, measured; step_cost: the
time of a training step as a ratio to the same model with BN, side by side; long_sequences: a recurrent
model's accuracy on sequences k times as long as in training.
Run by `bnexp run` after training and on their own by `bnexp analyze RESULTS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

import bnexp
from bnexp import records
from bnexp.analyses import eval_modes, long_sequences, scale_invariance, step_cost
from bnexp.config import AnalysesConfig, DatasetConfig, ModelConfig, from_dict
from bnexp.data import Data, DataCache
from bnexp.errors import BnexpError
from bnexp.models import build_model
from bnexp.store import (
    ANALYSES_DIR,
    WEIGHTS,
    CorruptFile,
    RunDir,
    child_path,
    load_tensors,
    parse_json,
    read_experiment_meta,
    read_regular,
    real_dir,
    strict_json,
    write_atomic,
)

# name -> analysis(trained model, data, its settings, the run's recorded config) -> result
Analysis = Callable[[nn.Module, Data, Any, dict[str, Any]], dict[str, Any]]
ANALYSES: dict[str, Analysis] = {
    "eval_modes": lambda model, data, settings, run: eval_modes.analyze(
        model, data, settings, run["batch_size"], run["seed"]
    ),
    "scale_invariance": lambda model, data, settings, run: scale_invariance.analyze(model, data),
    "step_cost": lambda model, data, settings, run: step_cost.analyze(model, data, run),
    "long_sequences": lambda model, data, settings, run: long_sequences.analyze(model, data, settings),
}


def requested(cfg: AnalysesConfig | None) -> dict[str, Any]:
    """The analyses a config asks for, with their settings (plain data)."""
    if cfg is None:
        return {}
    out: dict[str, Any] = {}
    if cfg.eval_modes is not None:
        out["eval_modes"] = cfg.eval_modes
    if cfg.scale_invariance:
        out["scale_invariance"] = True
    if cfg.step_cost:
        out["step_cost"] = True
    if cfg.long_sequences is not None:
        out["long_sequences"] = cfg.long_sequences
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(read_regular(path, binary=True, follow=False)).hexdigest()


def analyze_experiment(
    experiment_dir: Path,
    data_root: Any,
    device: torch.device,
    force: bool,
    say: Callable[[str], None],
    root: Path | None = None,
) -> int:
    """Every requested analysis on every finished run of one experiment; returns how many could not run.
    Results go to <run>/analyses/, a real folder below `root` (the results folder named by the user): run names
    from experiment.yaml are single path components, and no link is written through."""
    meta = read_experiment_meta(experiment_dir)
    where = str(experiment_dir / "experiment.yaml")
    wanted = requested(from_dict(AnalysesConfig | None, meta["config"].get("analyses"), f"{where}: analyses"))
    if not wanted:
        return 0
    cache = DataCache(data_root)  # each run's own dataset settings (a grid over dataset.*), shared where they agree
    problems = 0
    names = meta.get("runs")
    for name in names if isinstance(names, list) else []:
        try:
            run = RunDir(child_path(experiment_dir, str(name)))
            summary = records.read(run.summary() or {"status": "unfinished"}, records.Summary, f"{run.path}: summary")
            if summary.status not in ("completed", "diverged"):
                say(f"{name}: not finished; no analysis")
                continue
            weights = run.path / WEIGHTS
            # committed results keep analyses but not weights: a record with these settings then stands as written
            digest = _digest(weights) if weights.is_file() else None
            todo = {}
            for analysis, settings in wanted.items():
                record = _settings(settings)
                target = run.path / ANALYSES_DIR / f"{analysis}.json"
                if not force and _done(target, record, digest):
                    say(f"{name}: {analysis} already done" + ("" if digest else " (its weights are not kept here)"))
                    continue
                todo[analysis] = (settings, record, target)
            if not todo:
                continue
            if digest is None:
                raise CorruptFile(
                    f"{weights} is missing: set keep_final_weights: true and start the run over with "
                    f"--restart-run {name}"
                )
            config = run.config()
            data = cache.get(from_dict(DatasetConfig, config["dataset"], f"{run.path}/config.yaml: dataset"), device)
            model = build_model(from_dict(ModelConfig, config["model"], f"{run.path}/config.yaml: model"), data.inputs)
            state = load_tensors(weights, "the final weights", f"start the run over with --restart-run {name}")
            if not isinstance(state, dict):
                raise CorruptFile(
                    f"{weights}: not a state dict of tensors ({type(state).__name__}); start the run "
                    f"over with --restart-run {name}"
                )
            model.load_state_dict(state)
            model.to(device).eval()
            for analysis, (settings, record, target) in todo.items():
                result = ANALYSES[analysis](model, data, settings, config)
                real_dir(root if root is not None else experiment_dir, target.parent)
                write_atomic(
                    target,
                    strict_json(
                        {
                            "analysis": analysis,
                            "run": name,
                            "settings": record,
                            "weights_sha256": digest,
                            "bnexp": bnexp.__version__,
                            "torch": torch.__version__,
                            "device": device.type,
                            "result": result,
                        },
                        indent=1,
                    )
                    + "\n",
                )
                say(f"{name}: {analysis} -> {target}")
        except (BnexpError, RuntimeError, KeyError, TypeError, ValueError, OSError) as e:  # one run's problem never
            # stops the others
            problems += 1
            say(f"{name}: analysis not possible: {e}")
    return problems


def _settings(settings: Any) -> Any:
    return settings.model_dump() if isinstance(settings, BaseModel) else settings


def _done(target: Path, settings: Any, digest: str | None) -> bool:
    """The analysis is recorded with these settings, on these weights (on any, where they are not kept)."""
    try:
        old = records.read(parse_json(read_regular(target, follow=False)), records.AnalysisFile, str(target))
    except (OSError, ValueError, CorruptFile):
        return False
    return old.settings == settings and (digest is None or old.weights_sha256 == digest)
