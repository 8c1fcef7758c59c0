"""Training one run: seeded, data on the device, no host sync except at log and eval points, and
checkpoints from which a resumed run continues bit for bit (on CPU)."""

from __future__ import annotations

import os
import platform
import random
import signal
import statistics
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import bnexp
from bnexp.checkpoint import check_checkpoint, checkpoint_threads, rng_states, set_rng_states
from bnexp.config import BATCH_NORMS, ExperimentConfig, ModelConfig, OptimizerConfig, RunPlan
from bnexp.data import Data, Split, balanced_subset, keep_last_batch, shuffled_batches
from bnexp.distributed import World, parallelize, sync_buffers
from bnexp.errors import BnexpError
from bnexp.models import build_model
from bnexp.nn import convert_momentum
from bnexp.probes.dead_units import PROBE_IMAGES, dead_units, relu_points
from bnexp.probes.schedule import RunProbes
from bnexp.results import training_course
from bnexp.store import (
    CHECKPOINT,
    ERROR_LOG,
    WEIGHTS,
    CorruptFile,
    LinkRefused,
    NullRunDir,
    RunDir,
    load_tensors,
    save_atomic,
)


class Reporter(Protocol):
    """Progress display; see bnexp.progress."""

    def start_run(self, name: str, total_steps: int, done_steps: int) -> None: ...
    def advance(self, steps: int, loss: float | None) -> None: ...
    def evaluated(self, line: str, test_acc: float) -> None: ...
    def end_run(self, line: str) -> None: ...


class StopRequest:
    """Set by SIGINT/SIGTERM; the trainer stops at the next step boundary and writes a checkpoint."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = 0) -> None:
        self.signum = signum

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.signum is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.request(signum)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def select_device(name: str, index: int | None = None) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; `index` selects one of several GPUs (a process's local rank)."""
    if name == "cuda" and index is not None:
        select_device("cuda")
        return torch.device("cuda", index)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise BnexpError(f"unknown device {name!r}; allowed: auto, {', '.join(available)}")
    if not available[name]:
        raise BnexpError(f"device {name!r} is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic = deterministic or device.type == "cpu"
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Compute with `count` torch threads inside, with the count there was before afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def make_optimizer(cfg: OptimizerConfig, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    # foreach: one multi-tensor kernel per update term instead of one per parameter; same numbers as the
    # per-parameter loop (tested), 2-5 % faster on CPU. fused=True is faster still but rounds differently.
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, foreach=True)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The mixed-precision context of a run: bf16 convs/matmuls under `precision: bf16`, a no-op for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def evaluate(
    model: nn.Module, data: Data, split: Split, batch_size: int, precision: str = "fp32", world: World = World()
) -> tuple[float, float]:
    """Mean loss and accuracy in eval mode over the whole split; one host sync at the end. With several
    processes each evaluates a contiguous shard and the sums are added up."""
    was_training = model.training
    model.eval()
    device = split.labels.device
    lo, hi = len(split) * world.rank // world.size, len(split) * (world.rank + 1) // world.size
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), autocast(device, precision):
        for start in range(lo, hi, batch_size):
            end = min(start + batch_size, hi)
            logits = model(data.to_input(split.images[start:end]))
            labels = split.labels[start:end]
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
    model.train(was_training)
    loss, n_correct = world.sum_(torch.stack([loss_sum, correct.to(loss_sum.dtype)])).tolist()
    return loss / len(split), n_correct / len(split)


IMPLEMENTATIONS = {
    "batchnorm": "bnexp.nn.BatchNorm (analytic backward)",
    "naive_batchnorm": "bnexp.nn.NaiveBatchNorm (autograd through mean/var)",
    "torch_batchnorm": "torch.nn.BatchNorm1d/2d",
    "batchrenorm": "bnexp.nn.BatchRenorm (BatchNorm with clipped r, d corrections)",
    "noisy_batchnorm": "bnexp.nn.NoisyBatchNorm (BatchNorm plus per-step random scale and shift)",
    "l1_batchnorm": "bnexp.nn.LpBatchNorm(p=1) (divides by the mean absolute deviation; autograd)",
    "linf_batchnorm": "bnexp.nn.LpBatchNorm(p=inf) (divides by the largest absolute deviation; autograd)",
    "decorrelated_batchnorm": "bnexp.nn.DecorrelatedBatchNorm (ZCA whitening per group of channels)",
}


NON_STANDARD_CONVENTIONS = {
    norm: {
        "train_variance": f"none: divides by sqrt(s^2 + eps), s = {scale} of the centred batch per channel",
        "running_variance": "running_var is the running average of s^2 (no m / (m - 1) factor)",
    }
    for norm, scale in (("l1_batchnorm", "mean absolute deviation"), ("linf_batchnorm", "largest absolute deviation"))
} | {
    "decorrelated_batchnorm": {
        "train_variance": "whitened: Sigma^(-1/2) (x - mean) per group, Sigma the biased batch covariance + eps I",
        "running_variance": "running covariance per group, unbiased (m / (m - 1))",
    }
}


def bn_conventions(cfg: ModelConfig, exp: ExperimentConfig | None = None, world: World = World()) -> dict[str, Any]:
    """The normalization settings and conventions a run used, for its summary."""
    if cfg.norm not in BATCH_NORMS:
        return {"norm": cfg.norm, "eps": cfg.bn_eps, "affine": cfg.affine, "groups": cfg.groups}
    momentum = cfg.bn_momentum
    out = {
        "norm": cfg.norm,
        "implementation": IMPLEMENTATIONS[cfg.norm],
        "momentum": momentum,
        "momentum_convention": "torch: running = (1 - momentum) * running + momentum * batch"
        if momentum is not None
        else "cumulative average (momentum null)",
        "momentum_in_article_convention": None if momentum is None else convert_momentum(momentum, "torch", "article"),
        "eps": cfg.bn_eps,
        "affine": cfg.affine,
        "train_variance": "biased (divide by m)",
        "running_variance": "unbiased (m / (m - 1))",
        "running_var_init": 1.0,
        **NON_STANDARD_CONVENTIONS.get(cfg.norm, {}),
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


def steps_per_epoch(n: int, batch_size: int, processes: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    return full + keep_last_batch(rest, processes)


class Trainer:
    """One run. `fit()` trains to the end, to divergence or to a stop request, logging to the run directory.

    Everything a run depends on lives in `state_dict()`: model, optimizer, step, the data order (the
    generator state at the start of the current epoch and the position in it), all RNG states, the losses of
    the current log window, the lengths of the run's log files and the torch thread count of each segment
    of the run, so `load_state_dict` continues exactly. With several processes (`world`), each trains on its
    shard of every global batch and only rank 0 writes (its `run` is then the only real one).
    """

    def __init__(
        self,
        plan: RunPlan,
        data: Data,
        run: RunDir,
        device: torch.device,
        reporter: Reporter,
        stop: StopRequest | None = None,
        keep_checkpoints: bool = False,
        world: World = World(),
    ):
        self.plan, self.data, self.run, self.device, self.reporter = plan, data, run, device, reporter
        self.exp = exp = plan.experiment
        self.stop = stop if stop is not None else StopRequest()
        self.keep_checkpoints, self.world = keep_checkpoints, world
        seed_everything(plan.seed, exp.deterministic, device)
        self.model = build_model(plan.model, data.inputs).to(device)
        self.forward = parallelize(self.model, exp, world, device)
        if exp.compile:
            # the compiled wrapper shares the model's parameters; state dicts and probes use the plain model.
            # Static shapes: one graph per batch size seen (train, last batch, eval), each as fast as can be.
            self.forward = torch.compile(self.forward, dynamic=False)
        # several processes evaluate their own shards of the test set with the plain model (no DDP collectives)
        self.evaluator = self.forward if world.size == 1 else self.model
        self.optimizer = make_optimizer(exp.optimizer, self.model.parameters(), plan.lr)
        self.generator = torch.Generator().manual_seed(plan.seed)  # the data order, apart from init randomness
        self.per_epoch = steps_per_epoch(len(data.train), exp.batch_size, world.size)
        self.total_steps = exp.steps or exp.epochs * self.per_epoch
        self.eval_every = exp.eval_every or self.per_epoch
        self.checkpoint_every = exp.checkpoint_every or self.eval_every
        self.probes = RunProbes(exp, plan.lr, self.model, self.per_epoch, device, run.log_probe)
        self.train_eval = None
        if exp.eval_train_subset:
            idx = balanced_subset(data.train.labels.cpu(), exp.eval_train_subset, data.inputs.num_classes)
            self.train_eval = Split(data.train.images[idx.to(device)], data.train.labels[idx.to(device)])
        first = data.train.images[:PROBE_IMAGES]  # the same fixed images in every run of a dataset
        self.dead_probe_batch = data.to_input(first) if relu_points(self.model) else None
        self.step = 0
        self.epoch_rng = self.generator.get_state()
        self.batch_in_epoch = 0
        self.losses = torch.zeros(exp.log_every, device=device)  # per-step losses of the current log window
        self.window = 0
        self.segments: list[dict[str, int]] = []  # [{"from_step", "torch_threads", "processes"}]
        self.images_since_eval = 0  # for images/s only; not part of the state

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch_rng": self.epoch_rng,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng_states(),
            "window_losses": self.losses[: self.window].cpu(),
            "log_offsets": self.run.offsets(),
            "segments": self.segments,
            "run": self.plan.name,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint (run with the torch thread count it records: see `checkpoint_threads`)."""
        if state.get("run") != self.plan.name:
            raise CorruptFile(
                f"{self.run.path / CHECKPOINT}: belongs to run {state.get('run')!r}, not {self.plan.name!r}"
            )
        check_checkpoint(
            state,
            self.total_steps,
            self.per_epoch,
            self.exp.log_every,
            f"{self.run.path / CHECKPOINT}",
            restart_hint(self.plan),
        )
        self.run.check_offsets(state["log_offsets"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch_rng, self.batch_in_epoch = state["step"], state["epoch_rng"], state["batch_in_epoch"]
        set_rng_states(state["rng"])
        self.window = len(state["window_losses"])
        self.losses[: self.window] = state["window_losses"].to(self.device)
        self.segments = list(state.get("segments", []))
        self.run.truncate(state["log_offsets"])

    def save_checkpoint(self) -> None:
        """Rank 0's state. No running-statistics sync here: an uninterrupted run syncs at evaluations only (which
        come before their checkpoint), and with local BN every forward starts from rank 0's running statistics
        (DDP's buffer broadcast), so rank 0's are all a resumed run needs to continue bit for bit."""
        if not self.world.main:
            return
        self.run.flush()  # the offsets in the checkpoint must point at data on disk
        path = self.run.path / CHECKPOINT
        self.run.check_folder()
        save_atomic(self.state_dict(), path)
        if self.keep_checkpoints:
            os.link(path, self.run.path / f"checkpoint-step{self.step:08d}.pt")

    def sync_running_stats(self) -> None:
        """Local BN with several processes: make every rank's running statistics rank 0's (or, with
        `bn_running_stats: reduce`, their mean) before they are used (at each evaluation)."""
        if self.world.size > 1 and self.exp.bn_sync == "local":
            sync_buffers(self.model, self.exp.bn_running_stats, self.world)

    # -- training --------------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[torch.Tensor]:
        """This process's share of each global batch (all of it with one process)."""
        world = self.world
        while True:
            self.generator.set_state(self.epoch_rng)
            batches = shuffled_batches(
                len(self.data.train), self.exp.batch_size, self.generator, self.device, world.size
            )
            for i in range(self.batch_in_epoch, len(batches)):
                self.batch_in_epoch = i + 1
                yield batches[i] if world.size == 1 else batches[i].view(world.size, -1)[world.rank]
            self.epoch_rng, self.batch_in_epoch = self.generator.get_state(), 0

    def _train_step(self, idx: torch.Tensor) -> None:
        x = self.data.to_input(self.data.train.images[idx])
        y = self.data.train.labels[idx]
        self.probes.before_step(self.step + 1, self.optimizer, x, y)
        with autocast(self.device, self.exp.precision):
            # the hooks sit on the model's own modules: a compiled forward would not call them; DDP's does
            hooked = self.model if self.world.size == 1 else self.forward
            loss = F.cross_entropy(self.probes.forward(self.step + 1, x, self.forward, hooked), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.losses[self.window] = loss.detach()
        self.step, self.window = self.step + 1, self.window + 1
        self.images_since_eval += len(idx) * self.world.size

    def _flush_window(self) -> tuple[bool, bool]:
        """Log the window's mean loss (over all processes); returns (diverged, stop requested on any process).
        The window's tolist() is the only host sync between evaluations."""
        window = self.losses[: self.window]
        stop = False
        if self.world.size > 1:  # the global batch's loss, and one agreed decision for every process
            flag = torch.tensor([float(bool(self.stop))], device=self.device)
            reduced = self.world.sum_(torch.cat([window, flag])).tolist()
            losses, stop = [v / self.world.size for v in reduced[:-1]], reduced[-1] > 0
        else:
            losses = window.tolist()
        ceiling = self.exp.loss_ceiling
        bad = next((i for i, v in enumerate(losses) if not np.isfinite(v) or (ceiling and v > ceiling)), None)
        good = losses if bad is None else losses[:bad]
        first = self.step - self.window
        if good:
            self.run.log(
                {
                    "event": "train",
                    "step": first + len(good),
                    "epoch": (first + len(good)) / self.per_epoch,
                    "loss": float(np.mean(good)),
                    "steps": len(good),
                }
            )
        self.reporter.advance(self.window, float(np.mean(good)) if good else None)
        self.window = 0
        if bad is not None:
            self.run.log({"event": "diverged", "step": first + bad + 1, "loss": losses[bad]})
        return bad is not None, stop

    def _evaluate(self, train_time: float) -> None:
        t0 = time.perf_counter()
        self.sync_running_stats()
        record: dict[str, Any] = {"event": "eval", "step": self.step, "epoch": self.step / self.per_epoch}
        for prefix, split in (("test", self.data.test), ("train", self.train_eval)):
            if split is not None:
                record[f"{prefix}_loss"], record[f"{prefix}_acc"] = evaluate(
                    self.evaluator, self.data, split, self.exp.eval_batch_size, self.exp.precision, self.world
                )
        if self.dead_probe_batch is not None and self.world.main:
            dead, units = dead_units(self.model, self.dead_probe_batch).tolist()
            record["dead_units"] = sum(dead) / sum(units)
            record["dead_units_per_layer"] = [d / u for d, u in zip(dead, units, strict=True)]
        eval_time = time.perf_counter() - t0
        self.run.log(record)
        speed = self._log_timing(train_time, eval_time)
        self.reporter.evaluated(
            f"{self.plan.name} epoch {record['epoch']:.2f} (step {self.step}): test_acc {record['test_acc']:.4f}, "
            f"test_loss {record['test_loss']:.4f}" + (f", {speed:.0f} img/s" if speed else ""),
            record["test_acc"],
        )

    def _log_timing(self, train_time: float, eval_time: float = 0.0) -> float | None:
        """A timing.jsonl record for the interval since the last one (at an evaluation, or where the run stops);
        returns its images/s."""
        speed = self.images_since_eval / train_time if train_time > 0 else None
        self.run.log_timing(
            {
                "step": self.step,
                "train_time_s": train_time,
                "eval_time_s": eval_time,
                "images_per_s": speed,
                "probe_time_s": self.probes.seconds,
            }
        )
        self.images_since_eval, self.probes.seconds = 0, 0.0
        return speed

    def _time_stop(self, t_interval: float) -> None:
        """Time the steps trained since the last evaluation when the run stops before its next one, so that
        train_time_s counts them (and a run stopped before its first evaluation does not say 0 s)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._log_timing(time.perf_counter() - t_interval)

    def fit(self) -> str:
        """Train until done; returns the status: completed, diverged or interrupted."""
        self.model.train()
        self.segments.append(
            {"from_step": self.step, "torch_threads": torch.get_num_threads(), "processes": self.world.size}
        )
        self.reporter.start_run(self.plan.name, self.total_steps, self.step)
        if self.step >= self.total_steps:  # resumed from the final checkpoint: a kill may have come before the weights
            self.save_final_weights()
            return "completed"
        t_interval = time.perf_counter()
        for idx in self._batches():
            next_step = self.step + 1
            eval_due = next_step % self.eval_every == 0 or next_step == self.total_steps
            before = self.probes.weights_before(eval_due)
            self._train_step(idx)
            done = self.step == self.total_steps
            checkpoint_due = self.step % self.checkpoint_every == 0 or done
            window_due = self.window == self.exp.log_every or eval_due or checkpoint_due
            # one process stops at the next step; several agree on a stop at window boundaries only
            stop = bool(self.stop) if self.world.size == 1 else False
            if window_due:
                diverged, agreed_stop = self._flush_window()
                if diverged:
                    self._time_stop(t_interval)
                    return "diverged"
                stop = stop or agreed_stop
            self.probes.weights_after(self.step, before)
            if eval_due:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self._evaluate(time.perf_counter() - t_interval)
            elif stop:  # before the checkpoint, which records the logs' lengths: a resumed run keeps this record
                self._time_stop(t_interval)
            if checkpoint_due or stop:
                self.save_checkpoint()
            if eval_due:  # the next interval times training only, not this evaluation or checkpoint
                t_interval = time.perf_counter()
            if done:
                self.save_final_weights()
                return "completed"
            if stop:
                return "interrupted"
        raise AssertionError("unreachable: the batch stream is endless")

    def save_final_weights(self) -> None:
        if self.exp.keep_final_weights and self.world.main:
            self.run.check_folder()
            save_atomic(self.model.state_dict(), self.run.path / WEIGHTS)

    def summary(self, status: str, started: str) -> dict[str, Any]:
        """The run's summary, computed from its log files (so a resumed run's equals an uninterrupted one's)."""
        evals, timings = self.run.metrics("eval"), self.run.timings()
        diverged, train = self.run.metrics("diverged"), self.run.metrics("train")
        best = max(evals, key=lambda r: r["test_acc"], default=None)
        speeds = [t["images_per_s"] for t in timings if t["images_per_s"]]
        classes = self.data.inputs.num_classes
        course = training_course(train, classes, bool(diverged), status)
        summary: dict[str, Any] = {
            "run": self.plan.name,
            "status": status,
            "seed": self.plan.seed,
            "model": self.plan.model.tag,
            "lr": self.plan.lr,
            "lr_multiplier": self.plan.lr_multiplier,
            "variant": self.plan.variant,
            "steps": self.step,
            "epochs": self.step / self.per_epoch,
            "steps_per_epoch": self.per_epoch,
            "batch_size": self.exp.batch_size,
            "processes": self.world.size,
            "batch_per_process": self.exp.batch_size // self.world.size,
            "num_classes": classes,
            "final_test_acc": evals[-1]["test_acc"] if evals else None,
            "final_test_loss": evals[-1]["test_loss"] if evals else None,
            "best_test_acc": best["test_acc"] if best else None,
            "best_step": best["step"] if best else None,
            "final_train_loss": train[-1]["loss"] if train else None,
            "diverged_at_step": diverged[0]["step"] if diverged else None,
            **course,
            "final_dead_units": evals[-1].get("dead_units") if evals else None,
            "time_to_threshold": {
                f"{t:g}": next(({"step": r["step"], "epoch": r["epoch"]} for r in evals if r["test_acc"] >= t), None)
                for t in self.exp.thresholds
            },
            "train_time_s": sum(t["train_time_s"] for t in timings),
            "eval_time_s": sum(t["eval_time_s"] for t in timings),
            "probe_time_s": sum(t.get("probe_time_s", 0.0) for t in timings),  # included in train_time_s
            "images_per_s": statistics.median(speeds) if speeds else None,
            "segments": self.segments,
            "started": started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "bn": bn_conventions(self.plan.model, self.exp, self.world),
            **provenance(self.device),
        }
        if evals and "train_acc" in evals[-1]:
            summary["final_train_acc"] = evals[-1]["train_acc"]
            summary["best_train_acc"] = max(r["train_acc"] for r in evals)
            summary["final_generalization_gap"] = evals[-1]["train_acc"] - evals[-1]["test_acc"]
        return summary


class DistributedRunFailed(Exception):
    """A process of a data-parallel run failed; the whole process group must end (exit code 1)."""


class Silent:
    """A reporter that shows nothing (processes other than rank 0, benchmarks)."""

    def message(self, line: str) -> None: ...
    def start_experiment(self, runs: dict) -> None: ...
    def start_run(self, name: str, total_steps: int, done_steps: int = 0) -> None: ...
    def advance(self, steps: int, loss: float | None) -> None: ...
    def evaluated(self, line: str, test_acc: float) -> None: ...
    def end_run(self, line: str) -> None: ...
    def skip_run(self, line: str, name: str | None = None) -> None: ...
    def run_finished(self, name: str, status: str, line: str | None = None) -> None: ...
    def close(self) -> None: ...


def restart_hint(plan: RunPlan) -> str:
    return f"start this run over with `bnexp run CONFIG --restart-run {plan.name}`"


def train_run(
    plan: RunPlan,
    action: str,
    run: RunDir,
    data: Data,
    device: torch.device,
    reporter: Reporter,
    stop: StopRequest,
    keep_checkpoints: bool = False,
    world: World = World(),
) -> dict[str, Any]:
    """Train (or resume) one run and write its summary; a failure becomes a 'failed' summary and an
    error.log, never an exception (except KeyboardInterrupt, after an 'interrupted' summary).

    A resumed run computes with the torch thread count recorded in its checkpoint (results are bitwise
    reproducible only for a given count); the count is restored afterwards."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    trainer, threads = None, torch.get_num_threads()
    try:
        try:
            state = None
            if action == "resume" and world.main:
                state = load_tensors(run.path / CHECKPOINT, "the checkpoint", restart_hint(plan))
            state = world.broadcast(state)
            saved_threads = (
                checkpoint_threads(state, run.path / CHECKPOINT, restart_hint(plan)) if state is not None else None
            )
            if saved_threads and saved_threads != threads:
                torch.set_num_threads(saved_threads)
                cores = len(os.sched_getaffinity(0))
                if saved_threads > cores and world.main:  # OpenMP threads spinning on fewer cores crawl
                    reporter.message(
                        f"{plan.name}: resuming with the {saved_threads} torch threads it started "
                        f"with (results are bitwise reproducible only for one thread count) on "
                        f"{cores} core(s): slow; run it alone (--jobs 1) for speed"
                    )
            writer = run if world.main else NullRunDir(run.path)
            writer.start(plan.resolved(), fresh=action == "start")
            trainer = Trainer(plan, data, writer, device, reporter, stop, keep_checkpoints, world)
            if state is not None:
                trainer.load_state_dict(state)
            status = trainer.fit()
            if not world.main:
                return {"run": plan.name, "status": status}
            summary = trainer.summary(status, started)
            reporter.end_run(
                f"{plan.name}: interrupted at step {trainer.step} of {trainer.total_steps} (run the "
                "same command again to resume)"
                if status == "interrupted"
                else f"{plan.name}: {status}, final test_acc {summary['final_test_acc']}"
            )
        except KeyboardInterrupt:
            run.close()
            with suppress(OSError, LinkRefused):
                run.write_summary({"run": plan.name, "status": "interrupted", "seed": plan.seed})
            raise
        except Exception as e:  # one run's failure must not take the experiment down
            remedy = f"; details in {run.path / ERROR_LOG}"
            if isinstance(e, CorruptFile) and "--restart-run" not in str(e):
                remedy = f"; {restart_hint(plan)}"
            summary = {
                "run": plan.name,
                "status": "failed",
                "seed": plan.seed,
                "error": f"{type(e).__name__}: {e}",
                "rank": world.rank,
                "started": started,
                "step": trainer.step if trainer else 0,
                **provenance(device),
            }
            if world.size > 1:
                # the other processes cannot go on without this one: record why (unless a process that
                # failed first already did), then end this process, which ends the run everywhere
                with suppress(OSError, CorruptFile, LinkRefused):
                    if run.summary() is None:  # rank 0 removed the last one when this run started
                        run.write_error(f"rank {world.rank} of {world.size}\n{traceback.format_exc()}")
                        run.write_summary(summary)
                raise DistributedRunFailed(f"{plan.name}: rank {world.rank} failed: {summary['error']}") from e
            with suppress(OSError, LinkRefused):  # the disk may be what failed; the summary still says why
                run.write_error(traceback.format_exc())
            reporter.end_run(f"{plan.name}: failed ({summary['error']}){remedy}")
        finally:
            if trainer is not None:
                trainer.run.close()
            run.close()
        run.write_summary(summary)
    except (OSError, LinkRefused) as e:  # the summary itself could not be written (a full disk): say so, go on
        summary = {"run": plan.name, "status": "failed", "error": f"cannot write the summary: {e}"}
        reporter.end_run(f"{plan.name}: failed, {summary['error']}")
    finally:
        torch.set_num_threads(threads)
    return summary
