"""What a training step of the run's model costs, as a ratio to the same model with bnexp's BatchNorm, measured
side by side: alternating repetitions of a few SGD steps on one fixed batch of the run's size, one torch thread,
in one process, so that machine noise hits both alike. Each repetition gives one ratio; the result is their
median, with all of them and the medians in ms per step. Timings are machine-dependent and not reproducible
bit for bit; the ratio is what carries over (a4: "whitening at every training step costs too much").
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import ModelConfig, from_dict
from bnexp.data import Data
from bnexp.models import build_model
from bnexp.train import torch_threads

REPS, STEPS, WARMUP = 7, 10, 3


def _timed_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def analyze(model: nn.Module, data: Data, run: dict[str, Any]) -> dict[str, Any]:
    cfg = from_dict(ModelConfig, run["model"], "config.yaml: model")
    device = next(model.parameters()).device
    # a copy: the timed steps change weights and running statistics, which the other analyses must not see
    contenders = {
        "this": copy.deepcopy(model),
        "batchnorm": build_model(cfg.model_copy(update={"norm": "batchnorm"}), data.inputs),
    }
    g = torch.Generator().manual_seed(0)
    spec = data.inputs
    x = torch.randn(run["batch_size"], spec.channels, spec.height, spec.width, generator=g).to(device)
    y = torch.randint(0, spec.num_classes, (run["batch_size"],), generator=g).to(device)
    with torch_threads(1):
        for m in contenders.values():
            m.to(device).train()
            _timed_steps(m, x, y, WARMUP)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for rep in range(REPS):
            order = list(contenders) if rep % 2 == 0 else list(reversed(contenders))
            for name in order:
                times[name].append(_timed_steps(contenders[name], x, y, STEPS))
    ratios = [a / b for a, b in zip(times["this"], times["batchnorm"], strict=True)]
    return {
        "norm": cfg.norm,
        "ratio_to_batchnorm": statistics.median(ratios),
        "ratios": ratios,
        "ms_per_step": {name: 1000 * statistics.median(t) for name, t in times.items()},
        "reps": REPS,
        "steps_per_rep": STEPS,
        "batch_size": run["batch_size"],
        "torch_threads": 1,
        "device": device.type,
    }
