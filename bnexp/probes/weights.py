"""Weight norms and effective steps (a4's scale invariance at work): for every conv/fc layer at each
evaluation, ||W|| and the relative size of the last step's update, ||W_after - W_before|| / ||W_before||.
With BN after a layer, the loss does not depend on ||W||, the gradient is orthogonal to W and shrinks as
1/||W||, so ||W|| grows and the effective step shrinks: an implicit learning-rate decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bnexp.probes.ics import weight_layers


class WeightNorms:
    def __init__(self, model: nn.Module):
        self.layers = weight_layers(model)

    def snapshot(self) -> list[Tensor]:
        return [m.weight.detach().clone() for _, m in self.layers]

    def measure(self, before: list[Tensor]) -> list[dict[str, Any]]:
        rows = [
            torch.stack([m.weight.detach().norm(), (m.weight.detach() - w0).norm() / w0.norm()])
            for (_, m), w0 in zip(self.layers, before, strict=True)
        ]
        table = torch.stack(rows).tolist()
        return [
            {
                "layers": [name for name, _ in self.layers],
                "weight_norm": [r[0] for r in table],
                "effective_step": [r[1] for r in table],
            }
        ]
