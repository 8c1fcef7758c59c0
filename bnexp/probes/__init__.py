"""Probes: measurements taken during training, written to the run's probes.jsonl, never changing the run.

distributions (pre-activation histograms and percentiles), dead_units (ReLUs never positive), weights (norms
and effective steps), landscape (loss and gradient along the gradient step), ics (internal covariate shift);
isolation holds the save-and-restore that lets a probe run extra passes.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from bnexp.config import ExperimentConfig
from bnexp.probes.ics import IcsProbe
from bnexp.probes.landscape import LandscapeProbe


class StepProbe(Protocol):
    """Measured before a training step, on that step's batch, inside `isolation.untouched`."""

    name: str

    def due(self, step: int) -> bool: ...

    def measure(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, precision: str
    ) -> list[dict[str, Any]]: ...


def step_probes(exp: ExperimentConfig, lr: float) -> list[StepProbe]:
    probes: list[StepProbe] = []
    if exp.landscape_probe:
        probes.append(LandscapeProbe(exp.landscape_probe, lr))
    if exp.ics_probe:
        probes.append(IcsProbe(exp.ics_probe))
    return probes
