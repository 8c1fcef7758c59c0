"""Dead ReLUs: the fraction of units whose input is never positive on a fixed probe batch.

A unit is a channel of a conv layer (never positive at any position of any probe image) or a feature of an fc
layer. A net that left chance and fell back to it usually has most of its units dead: no gradient flows
through them again. Measured in eval mode without gradients, so training is untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PROBE_IMAGES = 512  # the first training images (in file order, so all classes), the same in every run


def relu_points(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.ReLU)]


def dead_units(model: nn.Module, x: Tensor) -> Tensor:
    """Per ReLU (input side first): how many of its units are never positive on the batch `x`, and how many
    units it has, as a (2, layers) device tensor, so the caller decides when to sync."""
    counts: list[Tensor] = []

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        a = args[0].detach()
        alive = (a > 0).transpose(0, 1).reshape(a.shape[1], -1).any(1)
        counts.append(torch.stack([(~alive).sum(), torch.tensor(len(alive), device=a.device)]))

    handles = [m.register_forward_pre_hook(hook) for m in relu_points(model)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return torch.stack(counts, 1) if counts else torch.zeros(2, 0, device=x.device, dtype=torch.long)
