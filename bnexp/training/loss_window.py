"""The training losses between two train records, and divergence: a run diverges at the first step whose loss
is not finite or above the config's `loss_ceiling`."""

from __future__ import annotations

import numpy as np
import torch

from bnexp.distributed import World


def first_divergent(losses: list[float], ceiling: float | None) -> int | None:
    """Index of the first loss that is not finite or above `ceiling` (none: no ceiling), else None."""
    return next((i for i, v in enumerate(losses) if not np.isfinite(v) or (ceiling and v > ceiling)), None)


class LossWindow:
    """The per-step losses since the last train record, kept on the device: reading them (`read`) is the only
    host sync between evaluations."""

    def __init__(self, size: int, device: torch.device):
        self.losses = torch.zeros(size, device=device)
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count == len(self.losses)

    def add(self, loss: torch.Tensor) -> None:
        self.losses[self.count] = loss.detach()
        self.count += 1

    def values(self) -> torch.Tensor:
        return self.losses[: self.count]

    def restore(self, values: torch.Tensor) -> None:
        """Continue a window saved in a checkpoint."""
        self.count = len(values)
        self.losses[: self.count] = values.to(self.losses.device)

    def read(self, stop_requested: bool, world: World) -> tuple[list[float], bool]:
        """Empty the window: its losses (of the global batch: the mean over processes) and whether any process
        asked to stop (one agreed decision for every process)."""
        window = self.values()
        stop = False
        if world.size > 1:
            flag = torch.tensor([float(stop_requested)], device=self.losses.device)
            reduced = world.sum_(torch.cat([window, flag])).tolist()
            losses, stop = [v / world.size for v in reduced[:-1]], reduced[-1] > 0
        else:
            losses = window.tolist()
        self.count = 0
        return losses, stop
