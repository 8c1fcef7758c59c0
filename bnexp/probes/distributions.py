"""Activation probes: distributions of pre-activation values (after the norm where there is one) at chosen
steps, stored compactly (histogram counts and percentiles, never raw tensors) in the run's probes.jsonl.

A probe point is the input of an activation module (ReLU or Sigmoid), numbered from the input side; forward
pre-hooks are attached only for the forward pass of a step that is captured, so other steps cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from bnexp.config import ProbeConfig

ACTIVATIONS = (nn.ReLU, nn.Sigmoid)


def probe_points(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """(index, name, activation module) in forward order."""
    acts = [(name, m) for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)]
    return [(i, name, m) for i, (name, m) in enumerate(acts)]


def select_points(model: nn.Module, layers: str | list[int]) -> list[tuple[int, str, nn.Module]]:
    """`layers`: "all", "last", or indices of probe points (negative counts from the output side)."""
    points = probe_points(model)
    if layers == "all":
        return points
    if layers == "last":
        return points[-1:]
    try:
        return [points[i] for i in layers]
    except IndexError:
        raise ValueError(f"probe layers {layers} out of range: the model has {len(points)} probe points") from None


def distribution(values: Tensor, cfg: ProbeConfig) -> dict[str, Any]:
    """Histogram, moments and percentiles of all values, plus percentiles of one channel (`cfg.unit`)."""
    flat = values.detach().float().flatten()
    lo, hi = cfg.range
    q = torch.tensor([p / 100 for p in cfg.percentiles], device=flat.device)
    unit = values.detach().float().transpose(0, 1)[cfg.unit].flatten()
    # quantile() refuses very large inputs; a fixed-stride sample keeps it deterministic
    sample = flat[:: max(1, flat.numel() // 4_000_000)]
    stats = torch.cat(
        [
            torch.stack([flat.mean(), flat.std(), flat.min(), flat.max(), (flat < lo).sum(), (flat > hi).sum()]),
            torch.quantile(sample, q),
            torch.quantile(unit, q),
            torch.histc(flat, bins=cfg.bins, min=lo, max=hi),
        ]
    ).tolist()  # one host sync per probe point
    k = len(cfg.percentiles)
    mean, std, vmin, vmax, below, above = stats[:6]
    return {
        "n": flat.numel(),
        "mean": mean,
        "std": std,
        "min": vmin,
        "max": vmax,
        "below_range": int(below),
        "above_range": int(above),
        "percentiles": dict(zip(map(str, cfg.percentiles), stats[6 : 6 + k], strict=True)),
        "unit": cfg.unit,
        "unit_percentiles": dict(zip(map(str, cfg.percentiles), stats[6 + k : 6 + 2 * k], strict=True)),
        "hist": [int(c) for c in stats[6 + 2 * k :]],
    }


class Probes:
    """Decides which steps are captured and records the selected points' input distributions."""

    def __init__(self, cfg: ProbeConfig, model: nn.Module, steps_per_epoch: int):
        self.cfg = cfg
        self.points = select_points(model, cfg.layers)
        # the first or the last training step of each chosen epoch (its forward sees the weights before it)
        offset = 1 - steps_per_epoch if cfg.epoch_position == "first" else 0
        self.steps = {e * steps_per_epoch + offset for e in cfg.at_epochs}

    def due(self, step: int) -> bool:
        return step in self.steps or (self.cfg.every_steps is not None and step % self.cfg.every_steps == 0)

    @contextmanager
    def capture(
        self, into: list[dict[str, Any]], clock: Callable[[], AbstractContextManager] = nullcontext
    ) -> Iterator[None]:
        """Within this block, each forward through a selected point appends its distribution to `into`; each
        measurement runs inside `clock()` (the trainer times what probes cost; the forward itself is training)."""

        def hook_for(index: int, name: str):
            def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
                with clock():
                    into.append({"layer": index, "name": name, **distribution(args[0], self.cfg)})

            return hook

        handles = [m.register_forward_pre_hook(hook_for(i, n)) for i, n, m in self.points]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
