"""Where a training step's time goes: forward per layer type, backward per autograd node, optimizer.

Runs the bare training step (the floor measured by `bnexp bench`) under torch.profiler and prints the CPU
time per step of each part, so a missed throughput target can be traced to what dominates.

    python scripts/profile_step.py --data-root ../shared/data
    python scripts/profile_step.py --data-root ../shared/data --norm torch_batchnorm --batch 256
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from bnexp.bench import bare_step, experiment
from bnexp.config import DatasetConfig, ModelConfig, RunPlan
from bnexp.data import load_data

BACKWARD = "autograd::engine::evaluate_function: "
WARMUP = 20  # steps before profiling


def label_forward(model: torch.nn.Module) -> None:
    """Wrap every leaf module's forward in a profiler range named after its type."""
    for module in model.modules():
        if not list(module.children()):
            ranges: list[record_function] = []
            module.register_forward_pre_hook(
                lambda m, a, r=ranges: r.append(record_function(f"forward {type(m).__name__}").__enter__())
            )
            module.register_forward_hook(lambda m, a, y, r=ranges: r.pop().__exit__(None, None, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--norm", default="batchnorm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    dataset = DatasetConfig(name="fashion_mnist", normalize="unit")
    data = load_data(dataset, torch.device("cpu"), args.data_root)
    model_cfg = ModelConfig(name=args.model, norm=args.norm)
    exp = experiment(model_cfg, dataset, args.batch, args.steps + WARMUP)
    step, model = bare_step(RunPlan("profile", model_cfg, 1.0, 0, exp), data, torch.device("cpu"))

    for i in range(WARMUP):
        step(i)
    label_forward(model)
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("step"):
        for i in range(WARMUP, WARMUP + args.steps):
            step(i)
    parts: dict[str, float] = defaultdict(float)
    total = 0.0
    for event in prof.key_averages():
        name = event.key
        if name == "step":
            total = event.cpu_time_total
        elif name.startswith("forward "):
            parts[name] += event.cpu_time_total
        elif name.startswith(BACKWARD):
            parts["backward " + name.removeprefix(BACKWARD)] += event.cpu_time_total
        elif name.startswith("Optimizer."):
            parts["optimizer " + name.split("#")[-1]] += event.cpu_time_total
    parts["rest (loss, indexing, Python)"] = total - sum(parts.values())
    ms = 1e-3 / args.steps
    print(
        f"{args.model}-{args.norm}, batch {args.batch}, {torch.get_num_threads()} threads: "
        f"{total * ms:.2f} ms per step\n\n| part | ms per step | share |\n|---|---:|---:|"
    )
    for name, us in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {us * ms:.3f} | {us / total:.0%} |")


if __name__ == "__main__":
    main()
