"""How a trained model's test accuracy depends on the statistics its norm layers use (a2's pitfalls).

(a) eval mode with the running statistics; (b) batch statistics on shuffled test batches of several sizes (a2's
"training mode"); (c) batch statistics on homogeneous batches (one class each) and on near-duplicate batches
(shifted, noisy copies of one image), with the same batches in eval mode as the control; (d) the running
statistics lost (mean 0, variance 1, as when non-trainable variables are not restored); (e) re-estimated from
K training batches without gradients (a cumulative average), starting from (d); (f) how far the running
statistics are from the population statistics of the training set, per layer.

"Batch statistics" means the norm layers run as in training (Batch Renorm with its r, d corrections) while
everything else is in eval mode and no running statistic changes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from bnexp.config import EvalModesConfig
from bnexp.data import Data, Split
from bnexp.train import evaluate

EVAL_BATCH = 500


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """Layers that keep running statistics (bnexp's BN family and torch's)."""
    return [m for m in model.modules() if getattr(m, "running_mean", None) is not None and hasattr(m, "momentum")]


@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """The model with its norm layers normalizing by each batch's statistics, running statistics untouched."""
    saved = [(b, b.detach().clone()) for m in batch_norms(model) for b in m.buffers()]
    model.eval()
    for m in batch_norms(model):
        m.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)
        model.eval()


def accuracy_on_batches(model: nn.Module, data: Data, batches: list[tuple[Tensor, Tensor]], batch_stats: bool) -> float:
    """Accuracy over a list of (uint8 images, labels) batches, each forwarded on its own."""
    correct = total = 0
    with torch.no_grad():
        context = batch_statistics(model) if batch_stats else _eval(model)
        with context as m:
            for images, labels in batches:
                correct += int((m(data.to_input(images)).argmax(1) == labels).sum())
                total += len(labels)
    return correct / total


@contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    model.eval()
    yield model


def shuffled_batches(split: Split, size: int, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    perm = torch.randperm(len(split), generator=generator)
    chunks = [c for c in perm.split(size) if len(c) == size]  # full batches only: every batch has `size` images
    return [(split.images[c], split.labels[c]) for c in chunks]


def homogeneous_batches(split: Split, cfg: EvalModesConfig, generator: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """`groups` batches of `group_size` test images of one class each (classes in turn)."""
    classes = int(split.labels.max()) + 1
    out = []
    for g in range(cfg.groups):
        idx = torch.nonzero(split.labels.cpu() == g % classes).flatten()
        pick = idx[torch.randperm(len(idx), generator=generator)[: cfg.group_size]]
        out.append((split.images[pick], split.labels[pick]))
    return out


def near_duplicate_batches(
    split: Split, cfg: EvalModesConfig, generator: torch.Generator
) -> list[tuple[Tensor, Tensor]]:
    """`groups` batches, each `group_size` copies of one test image, shifted by up to `shift_pixels` in each
    direction (zero fill) plus Gaussian noise of sd `noise_std` (in units of the 0-255 range)."""
    out = []
    picks = torch.randperm(len(split), generator=generator)[: cfg.groups]
    for i in picks.tolist():
        image = split.images[i].float()
        copies = []
        for _ in range(cfg.group_size):
            dy, dx = (torch.randint(-cfg.shift_pixels, cfg.shift_pixels + 1, (2,), generator=generator)).tolist()
            shifted = _shift(image, dy, dx)
            noise = torch.randn(shifted.shape, generator=generator) * (255.0 * cfg.noise_std)
            copies.append((shifted + noise.to(shifted.device)).clamp_(0, 255).round_().to(torch.uint8))
        out.append((torch.stack(copies), split.labels[i].repeat(cfg.group_size)))
    return out


def _shift(image: Tensor, dy: int, dx: int) -> Tensor:
    """Translate a (C, H, W) image by (dy, dx) pixels, filling with zeros."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = image[..., ys, xs]
    return out


def lose_running_stats(model: nn.Module) -> None:
    """What restoring a model without its non-trainable variables leaves: mean 0, variance 1."""
    with torch.no_grad():
        for m in batch_norms(model):
            m.reset_running_stats()


def reestimate(model: nn.Module, data: Data, batches: int, batch_size: int, generator: torch.Generator) -> None:
    """Running statistics as a cumulative average over `batches` training batches (no gradients, no update
    of anything else), starting from the current ones."""
    norms = batch_norms(model)
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.momentum = None
        m.train()
    perm = torch.randperm(len(data.train), generator=generator)
    with torch.no_grad():
        for k in range(batches):
            idx = perm[(k * batch_size) % len(perm) :][:batch_size]
            model(data.to_input(data.train.images[idx]))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def population_gap(model: nn.Module, data: Data) -> list[dict[str, Any]]:
    """Per norm layer: its running statistics against the statistics of its input over the whole training
    set with the model in eval mode (what the running averages are meant to estimate). Only layers whose
    running_var estimates a per-channel variance: not whitening's covariances nor lp-BN's squared lp scales."""
    norms = [m for m in batch_norms(model) if hasattr(m, "running_var") and getattr(m, "running_var_is_variance", True)]
    sums: dict[int, list[Tensor]] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0].double()
        dims = [0, *range(2, x.dim())]
        s = sums.setdefault(id(module), [torch.zeros(x.shape[1], dtype=torch.float64) for _ in range(2)] + [0])
        s[0] += x.sum(dims).cpu()
        s[1] += x.square().sum(dims).cpu()
        s[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_pre_hook(hook) for m in norms]
    try:
        evaluate(model, data, data.train, EVAL_BATCH)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for i, m in enumerate(norms):
        total, squares, n = sums[id(m)]
        mean = total / n
        var = squares / n - mean.square()
        run_mean, run_var = m.running_mean.double().cpu(), m.running_var.double().cpu()
        rows.append(
            {
                "layer": i,
                "channels": len(mean),
                "mean_gap": float(((run_mean - mean).abs() / var.sqrt()).mean()),  # in population sd
                "var_log_ratio": float((run_var / var).log().abs().mean()),  # |log(running var / population var)|
                "max_mean_gap": float(((run_mean - mean).abs() / var.sqrt()).max()),
            }
        )
    return rows


def analyze(model: nn.Module, data: Data, cfg: EvalModesConfig, train_batch_size: int, seed: int) -> dict[str, Any]:
    """Every evaluation mode on `model` (left as it was found)."""
    rows: list[dict[str, Any]] = []

    def add(mode: str, acc: float, **extra: Any) -> None:
        rows.append({"mode": mode, "test_acc": acc, **extra})

    model = copy.deepcopy(model).eval()
    has_bn = bool(batch_norms(model))
    add("a_eval", evaluate(model, data, data.test, EVAL_BATCH)[1])
    for size in cfg.batch_sizes:
        batches = shuffled_batches(data.test, size, torch.Generator().manual_seed(seed))
        add("b_batch_stats_shuffled", accuracy_on_batches(model, data, batches, True), batch_size=size)
    for kind, make in (("homogeneous", homogeneous_batches), ("near_duplicates", near_duplicate_batches)):
        batches = make(data.test, cfg, torch.Generator().manual_seed(seed))
        add(f"c_batch_stats_{kind}", accuracy_on_batches(model, data, batches, True), batch_size=cfg.group_size)
        add(f"c_eval_{kind}", accuracy_on_batches(model, data, batches, False), batch_size=cfg.group_size)
    population = population_gap(model, data) if has_bn else []
    if has_bn:
        lost = copy.deepcopy(model)
        lose_running_stats(lost)
        add("d_lost_running_stats", evaluate(lost, data, data.test, EVAL_BATCH)[1])
        for k in cfg.reestimate_batches:
            fresh = copy.deepcopy(lost)
            reestimate(fresh, data, k, train_batch_size, torch.Generator().manual_seed(seed))
            add(
                "e_reestimated", evaluate(fresh, data, data.test, EVAL_BATCH)[1], batches=k, batch_size=train_batch_size
            )
    return {"rows": rows, "population_gap": population, "has_running_stats": has_bn}
