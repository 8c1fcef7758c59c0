"""Measuring during training without changing it: every probe that runs extra forward/backward passes does
so inside `untouched`, which restores parameters, buffers (BN running statistics), gradients, the
optimizer's state and the RNG states afterwards, so the run continues bit for bit as without the probe."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def untouched(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[Callable[[], None]]:
    """Yields `reset()`, which puts the buffers (running statistics) and the RNGs back to their state at entry:
    call it before each extra forward, so that every pass sees the statistics the real step will see
    (Batch Renorm uses them in training) and draws the same noise (dropout, noisy BN)."""
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    buffers = [b.detach().clone() for b in model.buffers()]
    opt_state = copy.deepcopy(optimizer.state_dict())
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []

    def reset() -> None:
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers, strict=True):
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)

    try:
        yield reset
    finally:
        with torch.no_grad():
            for p, saved, grad in zip(model.parameters(), params, grads, strict=True):
                p.copy_(saved)
                p.grad = grad
        optimizer.load_state_dict(opt_state)
        reset()


def loss_and_grads(
    model: nn.Module, x: Tensor, y: Tensor, params: list[nn.Parameter], precision: str
) -> tuple[Tensor, list[Tensor]]:
    """Training-mode loss on (x, y) and its gradients with respect to `params` (no .grad is written)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = F.cross_entropy(model(x), y)
    return loss.detach(), list(torch.autograd.grad(loss, params))


def flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1).float() for t in tensors])
