"""Benchmark bnexp's BatchNorm against torch's native one and the naive autograd formula.

For the BN layer shapes of LeNet5 (batch 64) and AlexNet (batch 256, 224x224 input), times forward+backward
in training mode, the three implementations alternating within every repetition (so machine noise hits
them alike), and reports medians and ratios. Memory is the bytes each implementation keeps alive for
backward (autograd's saved tensors, counted once per storage) and, on CUDA, the peak allocated memory.

    python scripts/bench_bn.py                 # CPU (and CUDA when available)
    python scripts/bench_bn.py --reps 30 --device cpu --only lenet5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from bnexp.nn import BatchNorm, NaiveBatchNorm

SHAPES = {
    "lenet5": [(64, 6, 28, 28), (64, 16, 10, 10), (64, 120), (64, 84)],
    "alexnet": [(256, 96, 54, 54), (256, 256, 26, 26), (256, 384, 12, 12), (256, 256, 12, 12), (256, 4096)],
}
IMPLS: dict[str, Callable[[int, int], nn.Module]] = {
    "torch": lambda c, ndim: (nn.BatchNorm2d if ndim == 4 else nn.BatchNorm1d)(c),
    "bnexp": lambda c, ndim: BatchNorm(c),
    "naive": lambda c, ndim: NaiveBatchNorm(c),
}


def saved_bytes(layer: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one forward (each storage counted once). The
    input counts when it is saved: inside a network, that is what keeps it alive until backward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    inp = x.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(inp)
    del out
    return sum(storages.values())


def step(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> None:
    x.grad = None
    layer(x).backward(dy)


def cuda_peak(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step(layer, x, dy)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def bench_shape(shape: tuple[int, ...], device: torch.device, reps: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    x = torch.randn(shape, device=device).requires_grad_()
    dy = torch.randn(shape, device=device)
    layers = {name: make(shape[1], len(shape)).to(device) for name, make in IMPLS.items()}
    times: dict[str, list[float]] = {name: [] for name in layers}
    for layer in layers.values():  # warm-up
        step(layer, x, dy)
    for _ in range(reps):
        for name, layer in layers.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(layer, x, dy)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    result = {}
    for name, layer in layers.items():
        result[name] = {
            "ms": 1000 * statistics.median(times[name]),
            "min_ms": 1000 * min(times[name]),
            "max_ms": 1000 * max(times[name]),
            "saved_mb": saved_bytes(layer, x) / 2**20,
        }
        if device.type == "cuda":
            result[name]["peak_mb"] = cuda_peak(layer, x, dy) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per shape (default 15)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--only", choices=sorted(SHAPES), help="only this model's shapes")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device != "cuda" else []
    if args.device != "cpu" and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.reps} reps, median ms of fwd+bwd")
    for device in devices:
        print(f"\n## {device.type}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
        peak = " | peak MB torch/bnexp/naive" if device.type == "cuda" else ""
        print(
            f"| model | shape | torch ms | bnexp ms | naive ms | bnexp/torch | naive/bnexp | "
            f"saved MB torch/bnexp/naive{peak} |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if peak else ""))
        ratios = []
        for model, shapes in SHAPES.items():
            if args.only and model != args.only:
                continue
            for shape in shapes:
                r = bench_shape(shape, device, args.reps)
                ratios.append(r["bnexp"]["ms"] / r["torch"]["ms"])
                saved = "/".join(f"{r[n]['saved_mb']:.1f}" for n in IMPLS)
                peaks = (" | " + "/".join(f"{r[n]['peak_mb']:.1f}" for n in IMPLS)) if peak else ""
                print(
                    f"| {model} | {'x'.join(map(str, shape))} | {r['torch']['ms']:.3f} | {r['bnexp']['ms']:.3f} | "
                    f"{r['naive']['ms']:.3f} | {r['bnexp']['ms'] / r['torch']['ms']:.2f} | "
                    f"{r['naive']['ms'] / r['bnexp']['ms']:.2f} | {saved}{peaks} |",
                    flush=True,
                )
        print(f"\nbnexp/torch time ratio: median {statistics.median(ratios):.2f}, worst {max(ratios):.2f}")


if __name__ == "__main__":
    main()
