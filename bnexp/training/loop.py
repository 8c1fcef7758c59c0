"""The training loop of one run: seeded, data on the device, no host sync except at log and eval points, and
checkpoints from which a resumed run continues bit for bit (on CPU)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnexp.checkpoint import check_checkpoint, rng_states, set_rng_states
from bnexp.config import OptimizerConfig, RunPlan
from bnexp.data import Data, keep_last_batch, shuffled_batches
from bnexp.distributed import World, parallelize
from bnexp.models import build_model
from bnexp.probes.schedule import RunProbes
from bnexp.store import CHECKPOINT, CorruptFile, RunDir
from bnexp.training.compute import autocast, seed_everything
from bnexp.training.evaluate import RunEvaluation
from bnexp.training.loss_window import LossWindow, first_divergent
from bnexp.training.reporting import Reporter
from bnexp.training.resume import restart_hint, write_checkpoint, write_final_weights
from bnexp.training.stop import StopRequest
from bnexp.training.timing import IntervalClock


def make_optimizer(cfg: OptimizerConfig, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    # foreach: one multi-tensor kernel per update term instead of one per parameter; same numbers as the
    # per-parameter loop (tested), 2-5 % faster on CPU. fused=True is faster still but rounds differently.
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, foreach=True)


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
        self.optimizer = make_optimizer(exp.optimizer, self.model.parameters(), plan.lr)
        self.generator = torch.Generator().manual_seed(plan.seed)  # the data order, apart from init randomness
        self.per_epoch = steps_per_epoch(len(data.train), exp.batch_size, world.size)
        self.total_steps = exp.steps or exp.epochs * self.per_epoch
        self.eval_every = exp.eval_every or self.per_epoch
        self.checkpoint_every = exp.checkpoint_every or self.eval_every
        self.probes = RunProbes(exp, plan.lr, self.model, self.per_epoch, device, run.log_probe)
        self.evaluation = RunEvaluation(self.model, self.forward, data, exp, device, world)
        self.step = 0
        self.epoch_rng = self.generator.get_state()
        self.batch_in_epoch = 0
        self.window = LossWindow(exp.log_every, device)
        self.segments: list[dict[str, int]] = []  # [{"from_step", "torch_threads", "processes"}]
        self.clock = IntervalClock(device)

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
        self.clock.restart()
        for idx in self._batches():
            step = self.step + 1
            last = step == self.total_steps
            evaluate = step % self.eval_every == 0 or last
            checkpoint = step % self.checkpoint_every == 0 or last
            weights_before = self.probes.weights_before(evaluate)
            self._train_step(idx)
            # one process stops at the next step; several agree on a stop at window boundaries only
            stop = bool(self.stop) and self.world.size == 1
            if self.window.full or evaluate or checkpoint:
                diverged, agreed_stop = self._log_window()
                if diverged:
                    self._log_timing(self.clock.elapsed())
                    return "diverged"
                stop = stop or agreed_stop
            self.probes.weights_after(self.step, weights_before)
            if evaluate:
                self._evaluate(self.clock.elapsed())
            elif stop:  # before the checkpoint, which records the logs' lengths: a resumed run keeps this record
                self._log_timing(self.clock.elapsed())
            if checkpoint or stop:
                self.save_checkpoint()
            if evaluate:  # the next interval times training only, not this evaluation or checkpoint
                self.clock.restart()
            if last:
                self.save_final_weights()
                return "completed"
            if stop:
                return "interrupted"
        raise AssertionError("unreachable: the batch stream is endless")

    # -- one step --------------------------------------------------------------------------------------------
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
        self.window.add(loss)
        self.step += 1
        self.clock.images += len(idx) * self.world.size

    # -- logging and evaluation ------------------------------------------------------------------------------
    def _log_window(self) -> tuple[bool, bool]:
        """Log the window's mean loss (over all processes) and where it diverged, if it did; returns (diverged,
        stop requested on any process)."""
        losses, stop = self.window.read(bool(self.stop), self.world)
        bad = first_divergent(losses, self.exp.loss_ceiling)
        good = losses if bad is None else losses[:bad]
        first = self.step - len(losses)
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
        self.reporter.advance(len(losses), float(np.mean(good)) if good else None)
        if bad is not None:
            self.run.log({"event": "diverged", "step": first + bad + 1, "loss": losses[bad]})
        return bad is not None, stop

    def _evaluate(self, train_time: float) -> None:
        """Log the eval record and the timing record of the interval that ends here; show the result."""
        t0 = time.perf_counter()
        record = self.evaluation.record(self.step, self.per_epoch)
        eval_time = time.perf_counter() - t0
        self.run.log(record)
        speed = self._log_timing(train_time, eval_time)
        self.reporter.evaluated(
            f"{self.plan.name} epoch {record['epoch']:.2f} (step {self.step}): test_acc {record['test_acc']:.4f}, "
            f"test_loss {record['test_loss']:.4f}" + (f", {speed:.0f} img/s" if speed else ""),
            record["test_acc"],
        )

    def _log_timing(self, train_time: float, eval_time: float = 0.0) -> float | None:
        """A timing.jsonl record for the interval since the last one; returns its images/s."""
        record = self.clock.record(self.step, train_time, eval_time, self.probes.seconds)
        self.probes.seconds = 0.0
        self.run.log_timing(record)
        return record["images_per_s"]

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch_rng": self.epoch_rng,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": rng_states(),
            "window_losses": self.window.values().cpu(),
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
        self.window.restore(state["window_losses"])
        self.segments = list(state.get("segments", []))
        self.run.truncate(state["log_offsets"])

    def save_checkpoint(self) -> None:
        """Rank 0's state. No running-statistics sync here: an uninterrupted run syncs at evaluations only (which
        come before their checkpoint), and with local BN every forward starts from rank 0's running statistics
        (DDP's buffer broadcast), so rank 0's are all a resumed run needs to continue bit for bit."""
        if self.world.main:
            self.run.flush()  # the offsets in the checkpoint must point at data on disk
            write_checkpoint(self.run, self.state_dict(), self.step, self.keep_checkpoints)

    def save_final_weights(self) -> None:
        if self.exp.keep_final_weights and self.world.main:
            write_final_weights(self.run, self.model)
