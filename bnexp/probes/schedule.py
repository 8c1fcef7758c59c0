"""Every probe of one run, asked by the trainer at three places in a step: the step probes (landscape, ICS)
measure on the step's batch before it, the distribution hooks ride on its forward when due, and the weight
norms are taken around the step before each evaluation. Records go to the run's probes.jsonl with their step
and epoch; the time spent measuring rather than training accumulates in `seconds` (timing.jsonl's
probe_time_s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from bnexp.config import ExperimentConfig
from bnexp.probes import step_probes
from bnexp.probes.distributions import Probes
from bnexp.probes.weights import WeightNorms


class RunProbes:
    def __init__(
        self,
        exp: ExperimentConfig,
        lr: float,
        model: nn.Module,
        per_epoch: int,
        device: torch.device,
        log: Callable[[dict[str, Any]], None],
    ):
        self.model, self.per_epoch, self.device, self.log, self.precision = model, per_epoch, device, log, exp.precision
        self.step_probes = step_probes(exp, lr)
        self.distributions = Probes(exp.probes, model, per_epoch) if exp.probes else None
        self.weight_norms = WeightNorms(model) if exp.weight_norms else None
        self.seconds = 0.0  # since the last evaluation; not part of a run's state

    def before_step(self, step: int, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
        """The step probes due at `step` (the step about to be taken), on its batch."""
        for probe in self.step_probes:
            if probe.due(step):
                with self.clock():
                    records = probe.measure(self.model, optimizer, x, y, self.precision)
                for record in records:
                    self.log({"probe": probe.name, "step": step, "epoch": step / self.per_epoch, **record})

    def forward(
        self, step: int, x: Tensor, forward: Callable[[Tensor], Tensor], hooked: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """The step's forward: `forward`, or `hooked` (one whose modules carry the hooks) while the distribution
        probes record, when they are due."""
        if self.distributions is None or not self.distributions.due(step):
            return forward(x)
        captured: list[dict[str, Any]] = []
        with self.distributions.capture(captured, self.clock):
            logits = hooked(x)
        for record in captured:
            self.log({"step": step, "epoch": step / self.per_epoch, **record})
        return logits

    def weights_before(self, evaluation_due: bool) -> list[Tensor] | None:
        if not (self.weight_norms and evaluation_due):
            return None
        with self.clock():
            return self.weight_norms.snapshot()

    def weights_after(self, step: int, before: list[Tensor] | None) -> None:
        if before is None or self.weight_norms is None:
            return
        with self.clock():
            records = self.weight_norms.measure(before)
        for record in records:
            self.log({"probe": "weights", "step": step, "epoch": step / self.per_epoch, **record})

    @contextmanager
    def clock(self) -> Iterator[None]:
        """Adds the block's wall time to `seconds` (on CUDA after the queued work, so it is the probe's)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds += time.perf_counter() - t0
