"""Test accuracy of a run's checkpoint(s) with BN in eval mode (running statistics) and in train mode (the
statistics of each test batch), to see how much the two differ, e.g. early in training.

    python scripts/eval_modes.py results/lenet5_bn/lenet5-bn_lr1x_s0 --data-root ../shared/data
    python scripts/eval_modes.py RUN_DIR --batch-size 64   # checkpoint-step*.pt files too (--keep-checkpoints)
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from bnexp.config import DatasetConfig, ModelConfig
from bnexp.data import load_data
from bnexp.models import build_model
from bnexp.store import RunDir
from bnexp.train import evaluate


def batch_stats_accuracy(model: torch.nn.Module, data, batch: int) -> float:
    """Accuracy with every norm layer normalizing by the test batch's own statistics (running stats untouched)."""
    probe = copy.deepcopy(model).train()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data.test), batch):
            x = data.to_input(data.test.images[start : start + batch])
            correct += (probe(x).argmax(1) == data.test.labels[start : start + batch]).sum().item()
    return correct / len(data.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-root")
    parser.add_argument("--batch-size", type=int, default=256, help="test batch size in train mode (default 256)")
    args = parser.parse_args()
    run = RunDir(args.run)
    cfg = run.config()
    data = load_data(DatasetConfig(**cfg["dataset"]), torch.device("cpu"), args.data_root)
    model = build_model(ModelConfig(**cfg["model"]), data.inputs)
    checkpoints = sorted(run.path.glob("checkpoint-step*.pt")) or [run.path / "checkpoint.pt"]
    print(f"{run.name}: test accuracy, eval mode vs train mode (batch statistics, batch {args.batch_size})")
    for path in checkpoints:
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"])
        eval_acc = evaluate(model, data, data.test, 5000)[1]
        train_acc = batch_stats_accuracy(model, data, args.batch_size)
        print(f"step {state['step']:>6}: eval mode {eval_acc:.4f}, train mode {train_acc:.4f}, "
              f"difference {train_acc - eval_acc:+.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
