"""Training one run: seeded, data on the device, no host sync except at log and eval points, and
checkpoints from which a resumed run continues bit for bit (on CPU)."""

from __future__ import annotations

import os
import platform
import random
import signal
import statistics
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import bnexp
from bnexp.config import BATCH_NORMS, ModelConfig, OptimizerConfig, RunPlan
from bnexp.data import Data, Split, balanced_subset, shuffled_batches
from bnexp.errors import BnexpError
from bnexp.models import build_model
from bnexp.nn import convert_momentum
from bnexp.probes import Probes
from bnexp.store import CHECKPOINT, RunDir, save_atomic


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


def select_device(name: str) -> torch.device:
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
    model: nn.Module, data: Data, split: Split, batch_size: int, precision: str = "fp32"
) -> tuple[float, float]:
    """Mean loss and accuracy in eval mode; one host sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.labels.device)
    correct = torch.zeros((), device=split.labels.device, dtype=torch.long)
    with torch.inference_mode(), autocast(split.labels.device, precision):
        for start in range(0, len(split), batch_size):
            logits = model(data.to_input(split.images[start : start + batch_size]))
            labels = split.labels[start : start + batch_size]
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
    model.train(was_training)
    loss, n_correct = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()
    return loss / len(split), n_correct / len(split)


def bn_conventions(cfg: ModelConfig) -> dict[str, Any]:
    """The normalization settings and conventions a run used, for its summary."""
    if cfg.norm not in BATCH_NORMS:
        return {"norm": cfg.norm, "eps": cfg.bn_eps, "affine": cfg.affine, "groups": cfg.groups}
    momentum = cfg.bn_momentum
    return {
        "norm": cfg.norm,
        "implementation": {
            "batchnorm": "bnexp.nn.BatchNorm (analytic backward)",
            "naive_batchnorm": "bnexp.nn.NaiveBatchNorm (autograd through mean/var)",
            "torch_batchnorm": "torch.nn.BatchNorm1d/2d",
        }[cfg.norm],
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
        "placement": "after conv/fc, before the activation; not after the last layer",
    }


def provenance(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": {"type": device.type, "name": name, "torch_threads": torch.get_num_threads()},
        "versions": {
            "bnexp": bnexp.__version__,
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "python": platform.python_version(),
        },
    }


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (rest > 1)  # a trailing batch of one image is dropped (see shuffled_batches)


def _rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


class Trainer:
    """One run. `fit()` trains to the end, to divergence or to a stop request, logging to the run directory.

    Everything a run depends on lives in `state_dict()`: model, optimizer, step, the data order (the
    generator state at the start of the current epoch and the position in it), all RNG states, the losses of
    the current log window and the lengths of the run's log files, so `load_state_dict` continues exactly.
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
    ):
        self.plan, self.data, self.run, self.device, self.reporter = plan, data, run, device, reporter
        self.exp = exp = plan.experiment
        self.stop = stop if stop is not None else StopRequest()
        self.keep_checkpoints = keep_checkpoints
        seed_everything(plan.seed, exp.deterministic, device)
        self.model = build_model(plan.model, data.inputs).to(device)
        # the compiled wrapper shares the model's parameters; state dicts and probes use the plain model.
        # Static shapes: one graph per batch size seen (train, last batch, eval), each as fast as can be.
        self.forward = torch.compile(self.model, dynamic=False) if exp.compile else self.model
        self.optimizer = make_optimizer(exp.optimizer, self.model.parameters(), plan.lr)
        self.generator = torch.Generator().manual_seed(plan.seed)  # the data order, apart from init randomness
        self.per_epoch = steps_per_epoch(len(data.train), exp.batch_size)
        self.total_steps = exp.steps or exp.epochs * self.per_epoch
        self.eval_every = exp.eval_every or self.per_epoch
        self.checkpoint_every = exp.checkpoint_every or self.eval_every
        self.probes = Probes(exp.probes, self.model, self.per_epoch) if exp.probes else None
        self.train_eval = None
        if exp.eval_train_subset:
            idx = balanced_subset(data.train.labels.cpu(), exp.eval_train_subset, data.inputs.num_classes)
            self.train_eval = Split(data.train.images[idx.to(device)], data.train.labels[idx.to(device)])
        self.step = 0
        self.epoch_rng = self.generator.get_state()
        self.batch_in_epoch = 0
        self.losses = torch.zeros(exp.log_every, device=device)  # per-step losses of the current log window
        self.window = 0
        self.images_since_eval = 0  # for images/s only; not part of the state

    # -- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch_rng": self.epoch_rng,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": _rng_states(),
            "window_losses": self.losses[: self.window].cpu(),
            "log_offsets": self.run.offsets(),
            "run": self.plan.name,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch_rng, self.batch_in_epoch = state["step"], state["epoch_rng"], state["batch_in_epoch"]
        _set_rng_states(state["rng"])
        self.window = len(state["window_losses"])
        self.losses[: self.window] = state["window_losses"].to(self.device)
        self.run.truncate(state["log_offsets"])

    def save_checkpoint(self) -> None:
        self.run.flush()  # the offsets in the checkpoint must point at data on disk
        path = self.run.path / CHECKPOINT
        save_atomic(self.state_dict(), path)
        if self.keep_checkpoints:
            os.link(path, self.run.path / f"checkpoint-step{self.step:08d}.pt")

    # -- training --------------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[torch.Tensor]:
        while True:
            self.generator.set_state(self.epoch_rng)
            batches = shuffled_batches(len(self.data.train), self.exp.batch_size, self.generator, self.device)
            for i in range(self.batch_in_epoch, len(batches)):
                self.batch_in_epoch = i + 1
                yield batches[i]
            self.epoch_rng, self.batch_in_epoch = self.generator.get_state(), 0

    def _train_step(self, idx: torch.Tensor) -> None:
        x = self.data.to_input(self.data.train.images[idx])
        with autocast(self.device, self.exp.precision):
            if self.probes and self.probes.due(self.step + 1):
                captured: list[dict[str, Any]] = []
                with self.probes.capture(captured):
                    logits = self.model(x)
                for record in captured:
                    self.run.log_probe({"step": self.step + 1, "epoch": (self.step + 1) / self.per_epoch, **record})
            else:
                logits = self.forward(x)
            loss = F.cross_entropy(logits, self.data.train.labels[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.losses[self.window] = loss.detach()
        self.step, self.window = self.step + 1, self.window + 1
        self.images_since_eval += len(idx)

    def _flush_window(self) -> bool:
        """Log the window's mean loss; True if a loss in it was non-finite or above the ceiling."""
        losses = self.losses[: self.window].tolist()  # the only host sync between evaluations
        ceiling = self.exp.loss_ceiling
        bad = next((i for i, v in enumerate(losses) if not np.isfinite(v) or (ceiling and v > ceiling)), None)
        good = losses if bad is None else losses[:bad]
        first = self.step - self.window
        if good:
            self.run.log({"event": "train", "step": first + len(good), "epoch": (first + len(good)) / self.per_epoch,
                          "loss": float(np.mean(good)), "steps": len(good)})  # fmt: skip
        self.reporter.advance(self.window, float(np.mean(good)) if good else None)
        self.window = 0
        if bad is not None:
            self.run.log({"event": "diverged", "step": first + bad + 1, "loss": losses[bad]})
        return bad is not None

    def _evaluate(self, train_time: float) -> None:
        t0 = time.perf_counter()
        record: dict[str, Any] = {"event": "eval", "step": self.step, "epoch": self.step / self.per_epoch}
        for prefix, split in (("test", self.data.test), ("train", self.train_eval)):
            if split is not None:
                record[f"{prefix}_loss"], record[f"{prefix}_acc"] = evaluate(
                    self.forward, self.data, split, self.exp.eval_batch_size, self.exp.precision
                )
        eval_time = time.perf_counter() - t0
        self.run.log(record)
        speed = self.images_since_eval / train_time if train_time > 0 else None
        self.images_since_eval = 0
        self.run.log_timing({"step": self.step, "train_time_s": train_time, "eval_time_s": eval_time,
                             "images_per_s": speed})  # fmt: skip
        self.reporter.evaluated(
            f"{self.plan.name} epoch {record['epoch']:.2f} (step {self.step}): test_acc {record['test_acc']:.4f}, "
            f"test_loss {record['test_loss']:.4f}" + (f", {speed:.0f} img/s" if speed else ""),
            record["test_acc"],
        )

    def fit(self) -> str:
        """Train until done; returns the status: completed, diverged or interrupted."""
        self.model.train()
        self.reporter.start_run(self.plan.name, self.total_steps, self.step)
        if self.step >= self.total_steps:
            return "completed"
        t_interval = time.perf_counter()
        for idx in self._batches():
            self._train_step(idx)
            done = self.step == self.total_steps
            eval_due = self.step % self.eval_every == 0 or done
            checkpoint_due = self.step % self.checkpoint_every == 0 or done
            if (self.window == self.exp.log_every or eval_due or checkpoint_due) and self._flush_window():
                return "diverged"
            if eval_due:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self._evaluate(time.perf_counter() - t_interval)
                t_interval = time.perf_counter()
            if checkpoint_due or self.stop:
                self.save_checkpoint()
            if done:
                return "completed"
            if self.stop:
                return "interrupted"
        raise AssertionError("unreachable: the batch stream is endless")

    def summary(self, status: str, started: str) -> dict[str, Any]:
        """The run's summary, computed from its log files (so a resumed run's equals an uninterrupted one's)."""
        evals, timings = self.run.metrics("eval"), self.run.timings()
        diverged, train = self.run.metrics("diverged"), self.run.metrics("train")
        best = max(evals, key=lambda r: r["test_acc"], default=None)
        after_epoch_1 = next((r for r in evals if r["epoch"] >= 1), None)
        speeds = [t["images_per_s"] for t in timings if t["images_per_s"]]
        chance = 1.0 / self.data.inputs.num_classes
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
            "final_test_acc": evals[-1]["test_acc"] if evals else None,
            "final_test_loss": evals[-1]["test_loss"] if evals else None,
            "best_test_acc": best["test_acc"] if best else None,
            "best_step": best["step"] if best else None,
            "final_train_loss": train[-1]["loss"] if train else None,
            "diverged_at_step": diverged[0]["step"] if diverged else None,
            # stuck at chance: test accuracy after the first epoch at most 1.5 x chance
            "not_training": after_epoch_1 is not None and after_epoch_1["test_acc"] <= 1.5 * chance,
            "time_to_threshold": {
                f"{t:g}": next(({"step": r["step"], "epoch": r["epoch"]} for r in evals if r["test_acc"] >= t), None)
                for t in self.exp.thresholds
            },
            "train_time_s": sum(t["train_time_s"] for t in timings),
            "eval_time_s": sum(t["eval_time_s"] for t in timings),
            "images_per_s": statistics.median(speeds) if speeds else None,
            "started": started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "bn": bn_conventions(self.plan.model),
            **provenance(self.device),
        }
        if evals and "train_acc" in evals[-1]:
            summary["final_train_acc"] = evals[-1]["train_acc"]
            summary["best_train_acc"] = max(r["train_acc"] for r in evals)
            summary["final_generalization_gap"] = evals[-1]["train_acc"] - evals[-1]["test_acc"]
        return summary
