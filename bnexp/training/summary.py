"""A run's summary.json: its outcome computed from its log files (so a resumed run's equals an uninterrupted
one's), the normalization conventions it used, and its provenance (versions, device, CPU, torch threads)."""

from __future__ import annotations

import platform
import statistics
from contextlib import suppress
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import torch
import torchvision

import bnexp
from bnexp import records
from bnexp.config import BATCH_NORMS, NORMS, ExperimentConfig, ModelConfig, RunPlan
from bnexp.distributed import World
from bnexp.nn import convert_momentum
from bnexp.results import training_course
from bnexp.store import RunDir


def bn_conventions(cfg: ModelConfig, exp: ExperimentConfig | None = None, world: World = World()) -> dict[str, Any]:
    """The normalization settings and conventions a run used, for its summary."""
    if cfg.norm not in BATCH_NORMS:
        return {"norm": cfg.norm, "eps": cfg.bn_eps, "affine": cfg.affine, "groups": cfg.groups}
    momentum = cfg.bn_momentum
    norm = NORMS[cfg.norm]
    out = {
        "norm": cfg.norm,
        "implementation": norm.implementation,
        "momentum": momentum,
        "momentum_convention": "torch: running = (1 - momentum) * running + momentum * batch"
        if momentum is not None
        else "cumulative average (momentum null)",
        "momentum_in_article_convention": None if momentum is None else convert_momentum(momentum, "torch", "article"),
        "eps": cfg.bn_eps,
        "affine": cfg.affine,
        "train_variance": norm.train_variance,
        "running_variance": norm.running_variance,
        "running_var_init": 1.0,
        "placement": "after conv/fc, before the activation; not after the last layer",
    }
    if world.size > 1 and exp is not None:
        out["processes"] = world.size
        out["batch_statistics"] = (
            f"synchronized over the {world.size} processes (global batch {exp.batch_size})"
            if exp.bn_sync == "sync"
            else f"per process (local batch {exp.batch_size // world.size})"
        )
        out["running_statistics"] = (
            "from the global batch statistics"
            if exp.bn_sync == "sync"
            else "rank 0's"
            if exp.bn_running_stats == "rank0"
            else "mean over processes before each evaluation"
        )
    return out


def cpu_model() -> str:
    """The processor (Linux: /proc/cpuinfo's model name with family, model and stepping, which tell apart CPUs that
    share a marketing name), else what platform knows."""
    fields: dict[str, str] = {}
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if not line.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    ids = ", ".join(f"{k.replace('cpu ', '')} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return f"{fields['model name']} ({ids})" if ids else fields["model name"]


def provenance(device: torch.device) -> dict[str, Any]:
    """What a run's numbers depend on beyond its config. Results are bitwise reproducible only where all of it
    matches: torch version, torch threads, and torch's CPU kernels (chosen by the instruction set,
    `cpu_capability`: AVX2 and AVX-512 builds of one op round differently); on a GPU its model and CUDA/cuDNN."""
    on_gpu = device.type == "cuda"
    info: dict[str, Any] = {
        "type": device.type,
        "name": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if on_gpu:
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return {
        "device": info,
        "versions": {
            "bnexp": bnexp.__version__,
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "python": platform.python_version(),
        },
    }


def now() -> str:
    """The time stamp of a summary's `started` and `finished`."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_summary(
    plan: RunPlan,
    run: RunDir,
    status: str,
    *,
    started: str,
    steps: int,
    per_epoch: int,
    segments: list[dict[str, int]],
    num_classes: int,
    device: torch.device,
    world: World,
) -> dict[str, Any]:
    """The summary of a run that ended `status` after `steps` steps, computed from its log files."""
    exp = plan.experiment
    evals, timings = run.metrics("eval"), run.timings()
    diverged, train = run.metrics("diverged"), run.metrics("train")
    best = max(evals, key=lambda r: r["test_acc"], default=None)
    speeds = [t["images_per_s"] for t in timings if t["images_per_s"]]
    logged = [records.TrainRecord.model_validate(r) for r in train]  # the records its readers will get
    course = training_course(logged, num_classes, bool(diverged), status)
    summary: dict[str, Any] = {
        "run": plan.name,
        "status": status,
        "seed": plan.seed,
        "model": plan.model.tag,
        "lr": plan.lr,
        "lr_multiplier": plan.lr_multiplier,
        "variant": plan.variant,
        "steps": steps,
        "epochs": steps / per_epoch,
        "steps_per_epoch": per_epoch,
        "batch_size": exp.batch_size,
        "processes": world.size,
        "batch_per_process": exp.batch_size // world.size,
        "num_classes": num_classes,
        "final_test_acc": evals[-1]["test_acc"] if evals else None,
        "final_test_loss": evals[-1]["test_loss"] if evals else None,
        "best_test_acc": best["test_acc"] if best else None,
        "best_step": best["step"] if best else None,
        "final_train_loss": train[-1]["loss"] if train else None,
        "diverged_at_step": diverged[0]["step"] if diverged else None,
        **asdict(course),
        "final_dead_units": evals[-1].get("dead_units") if evals else None,
        "time_to_threshold": {
            f"{t:g}": next(({"step": r["step"], "epoch": r["epoch"]} for r in evals if r["test_acc"] >= t), None)
            for t in exp.thresholds
        },
        "train_time_s": sum(t["train_time_s"] for t in timings),
        "eval_time_s": sum(t["eval_time_s"] for t in timings),
        "probe_time_s": sum(t.get("probe_time_s", 0.0) for t in timings),  # included in train_time_s
        "images_per_s": statistics.median(speeds) if speeds else None,
        "segments": segments,
        "started": started,
        "finished": now(),
        "bn": bn_conventions(plan.model, exp, world),
        **provenance(device),
    }
    if evals and "train_acc" in evals[-1]:
        summary["final_train_acc"] = evals[-1]["train_acc"]
        summary["best_train_acc"] = max(r["train_acc"] for r in evals)
        summary["final_generalization_gap"] = evals[-1]["train_acc"] - evals[-1]["test_acc"]
    return records.check(summary, records.Summary, f"{plan.name}: summary")  # the record its readers will check


def failed_summary(
    plan: RunPlan, error: Exception, *, started: str, step: int, device: torch.device, rank: int
) -> dict[str, Any]:
    """The summary of a run that raised `error` at `step` (on process `rank`)."""
    summary = {
        "run": plan.name,
        "status": "failed",
        "seed": plan.seed,
        "error": f"{type(error).__name__}: {error}",
        "rank": rank,
        "started": started,
        "step": step,
        **provenance(device),
    }
    return records.check(summary, records.Summary, f"{plan.name}: summary")
