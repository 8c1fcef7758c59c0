"""Eager against torch.compile: time per training step of one config's model, on random data of its input shape,
the two alternating within every repetition (so machine noise hits them alike); medians and their ratio.

    python scripts/compile_step_time.py configs/feature_distribution.yaml --norm batchnorm --batch 1
    python scripts/compile_step_time.py configs/lenet5_bn.yaml --norm none --batch 64 --steps 500 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bnexp.config import expand_grid, load_config
from bnexp.data import model_inputs
from bnexp.models import build_model
from bnexp.train import make_optimizer

WARMUP = 50  # steps each variant takes first (the compiled one compiles in them)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--norm", default="batchnorm", help="the config's model with this norm")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's batch size")
    parser.add_argument("--steps", type=int, default=1500, help="steps per repetition and variant")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = next(p for p in expand_grid(load_config(args.config)) if p.model.norm == args.norm)
    inputs = model_inputs(plan.experiment.dataset)
    batch = args.batch or plan.experiment.batch_size
    torch.manual_seed(0)
    model = build_model(plan.model, inputs)
    optimizer = make_optimizer(plan.experiment.optimizer, model.parameters(), plan.lr)
    x = torch.rand(batch, inputs.channels, inputs.height, inputs.width)
    y = torch.randint(0, inputs.num_classes, (batch,))
    variants = {"eager": model.forward, "compile": torch.compile(model.forward, dynamic=False)}

    def steps(forward, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(forward(x), y).backward()
            optimizer.step()
        return (time.perf_counter() - start) / n

    for forward in variants.values():
        steps(forward, WARMUP)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, forward in variants.items():
            times[name].append(steps(forward, args.steps))
    print(
        f"{plan.model.tag}, batch {batch}, {args.threads} thread(s), torch {torch.__version__}: "
        f"ms per training step, median of {args.reps} x {args.steps} steps"
    )
    for name, t in times.items():
        print(f"  {name:8s} {1e3 * statistics.median(t):.3f}  ({', '.join(f'{1e3 * v:.3f}' for v in t)})")
    print(f"  eager / compile: {statistics.median(times['eager']) / statistics.median(times['compile']):.2f}x")


if __name__ == "__main__":
    main()
