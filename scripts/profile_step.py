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
import torch.nn.functional as F
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from bnexp.config import DatasetConfig, ModelConfig, OptimizerConfig
from bnexp.data import load_data
from bnexp.models import build_model
from bnexp.train import make_optimizer

BACKWARD = "autograd::engine::evaluate_function: "


def label_forward(model: torch.nn.Module) -> None:
    """Wrap every leaf module's forward in a profiler range named after its type."""
    for module in model.modules():
        if not list(module.children()):
            ranges: list[record_function] = []
            module.register_forward_pre_hook(lambda m, a, r=ranges: r.append(record_function(
                f"forward {type(m).__name__}").__enter__()))  # fmt: skip
            module.register_forward_hook(lambda m, a, y, r=ranges: r.pop().__exit__(None, None, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--norm", default="batchnorm")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    data = load_data(DatasetConfig(name="fashion_mnist", normalize="unit"), torch.device("cpu"), args.data_root)
    model = build_model(ModelConfig(name=args.model, norm=args.norm), data.inputs)
    opt = make_optimizer(OptimizerConfig(name="adam", lr=1e-3), model.parameters(), 1e-3)
    x_all, y_all = data.to_input(data.train.images), data.train.labels
    idx = torch.randint(0, len(y_all), (args.steps + 20, args.batch), generator=torch.Generator().manual_seed(0))

    def step(i: int) -> None:
        loss = F.cross_entropy(model(x_all[idx[i]]), y_all[idx[i]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(20):  # warm-up
        step(i)
    label_forward(model)
    with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("step"):
        for i in range(20, 20 + args.steps):
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
    print(f"{args.model}-{args.norm}, batch {args.batch}, {torch.get_num_threads()} threads: "
          f"{total * ms:.2f} ms per step\n\n| part | ms per step | share |\n|---|---:|---:|")  # fmt: skip
    for name, us in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {us * ms:.3f} | {us / total:.0%} |")


if __name__ == "__main__":
    main()
