"""Time per training step of a model with each normalization, as a ratio to no norm: median of 7 alternating
repetitions of 50 steps on one random batch of 64, one torch thread, in one process.
Usage: python scripts/norm_step_cost.py [lenet5 | lstm]"""

import statistics
import sys
import time

import torch
from torch import nn

from bnexp.config import ModelConfig
from bnexp.models import InputSpec, build_model
from bnexp.nn.recurrent import RECURRENT_NORMS

NORMS = {
    "lenet5": (
        "none",
        "batchnorm",
        "weightnorm",
        "spectralnorm",
        "l1_batchnorm",
        "linf_batchnorm",
        "decorrelated_batchnorm",
    ),
    "lstm": RECURRENT_NORMS,
}
model_name = sys.argv[1] if len(sys.argv) > 1 else "lenet5"
torch.set_num_threads(1)
spec = InputSpec(1, 28, 28, 10)
models = {n: build_model(ModelConfig(name=model_name, norm=n), spec).train() for n in NORMS[model_name]}
opts = {n: torch.optim.SGD(m.parameters(), lr=0.01) for n, m in models.items()}
x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
times = {n: [] for n in models}
for _ in range(7):
    for n, m in models.items():
        t = time.perf_counter()
        for _step in range(50):
            loss = nn.functional.cross_entropy(m(x), y)
            opts[n].zero_grad()
            loss.backward()
            opts[n].step()
        times[n].append(time.perf_counter() - t)
base = statistics.median(times["none"])
print(
    model_name,
    {n: round(statistics.median(v) / base, 2) for n, v in times.items()},
    "ms/step none:",
    round(base / 50 * 1000, 2),
)
