"""The loss landscape along the gradient (Santurkar et al. 2018, Fig. 4), measured during training.

At a probe step, with g = grad L(theta) on the step's own batch, and for each step size eta of a grid:
L(theta - eta g) and grad L(theta - eta g) on the same batch, norm layers in training mode. Recorded:

* loss_min, loss_max: the range of the loss along the step ("loss landscape", the shaded band of Fig. 4a);
* grad_predictiveness: max over eta of ||grad L(theta - eta g) - g|| (Fig. 4b);
* beta_smoothness: max over eta of ||grad L(theta - eta g) - g|| / ||eta g|| (Fig. 4c, "effective beta").

Everything runs inside `untouched`: the run itself is not changed by the probe.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bnexp.config import LandscapeConfig
from bnexp.probes.isolation import flat, loss_and_grads, untouched


class LandscapeProbe:
    name = "landscape"

    def __init__(self, cfg: LandscapeConfig, lr: float):
        self.every = cfg.every_steps
        self.etas = [eta if cfg.absolute else float(f"{eta * lr:.12g}") for eta in cfg.etas]

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, precision: str
    ) -> list[dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]
        theta = [p.detach().clone() for p in params]
        with untouched(model, optimizer) as reset, torch.enable_grad():
            reset()
            loss0, g = loss_and_grads(model, x, y, params, precision)
            g_flat = flat(g)
            rows = []
            for eta in self.etas:
                with torch.no_grad():
                    for p, p0, gp in zip(params, theta, g, strict=True):
                        torch.sub(p0, gp, alpha=eta, out=p)
                reset()
                loss, g_eta = loss_and_grads(model, x, y, params, precision)
                diff = (flat(g_eta) - g_flat).norm()
                rows.append(torch.stack([loss.float(), diff, diff / (eta * g_flat.norm())]))
            table = torch.stack(rows).tolist()  # one host sync per probe step
        losses = [r[0] for r in table]
        return [
            {
                "loss": loss0.item(),
                "grad_norm": g_flat.norm().item(),
                "etas": self.etas,
                "losses": losses,
                "loss_min": min(losses),
                "loss_max": max(losses),
                "grad_predictiveness": max(r[1] for r in table),
                "beta_smoothness": max(r[2] for r in table),
            }
        ]
