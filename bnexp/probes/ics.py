"""Internal covariate shift as Santurkar et al. (2018, sec. 2.2) define it, measured during training.

For layer i with weights W_i at a probe step t on the step's batch:
    G_i  = grad_{W_i} L(W_1, ..., W_k)                         (all layers at step t)
    G'_i = grad_{W_i} L(W'_1, ..., W'_{i-1}, W_i, ..., W_k)    (the layers before i after this step's update)
where the update is the optimizer's own (the same step the run then takes). "Layers before i" are all
parameters that come before W_i in the model (conv/fc weights and biases, norm parameters). Under weight or
spectral norm, W_i is the parameter the weight is computed from (`weight_leaves`). Recorded per
layer: ||G_i - G'_i|| (the shift), and cos(G_i, G'_i). Runs inside `untouched`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.config import IcsConfig
from bnexp.probes.isolation import flat, loss_and_grads, untouched


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def weight_leaves(layer: nn.Module) -> list[nn.Parameter]:
    """The parameters a layer's weight is computed from: the weight itself, or under torch's parametrizations
    their originals (spectral norm: W; weight norm: g, then the direction v). The last one is the weight whose
    gradient the probe reports."""
    if nn.utils.parametrize.is_parametrized(layer, "weight"):
        originals = layer.parametrizations.weight
        return [getattr(originals, n) for n in ("original0", "original1", "original") if hasattr(originals, n)]
    return [layer.weight]


class IcsProbe:
    name = "ics"

    def __init__(self, cfg: IcsConfig):
        self.every = cfg.every_steps

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, precision: str
    ) -> list[dict[str, Any]]:
        params = list(model.parameters())
        layers = weight_layers(model)
        index = {id(p): i for i, p in enumerate(params)}
        leaves = [weight_leaves(m) for _, m in layers]
        weights = [ls[-1] for ls in leaves]
        original = [p.detach().clone() for p in params]
        with untouched(model, optimizer) as reset, torch.enable_grad():
            reset()
            _, before = loss_and_grads(model, x, y, weights, precision)
            # this step's actual update, as the optimizer will make it
            reset()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updated = [p.detach().clone() for p in params]
            rows = []
            for w, ls, g in zip(weights, leaves, before, strict=True):
                cut = min(index[id(q)] for q in ls)  # the layer's own parameters are not "before" it
                with torch.no_grad():
                    for j, p in enumerate(params):
                        p.copy_(updated[j] if j < cut else original[j])
                reset()
                _, (g_shifted,) = loss_and_grads(model, x, y, [w], precision)
                a, b = flat([g]), flat([g_shifted])
                rows.append(torch.stack([(a - b).norm(), F.cosine_similarity(a, b, dim=0), a.norm()]))
            table = torch.stack(rows).tolist()
        return [
            {
                "layers": [name for name, _ in layers],
                "shift": [r[0] for r in table],
                "cosine": [r[1] for r in table],
                "grad_norm": [r[2] for r in table],
            }
        ]
