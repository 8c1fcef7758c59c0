"""Test accuracy of a run's checkpoint(s) with BN in eval mode (running statistics) and with the statistics of
each shuffled test batch (a2's "training mode"), to see how much the two differ, e.g. early in training.
The full set of evaluation modes on a run's final weights is the eval_modes analysis (`bnexp analyze`).

    python scripts/eval_modes.py results/lenet5_bn/lenet5-bn_lr1x_s0 --data-root ../shared/data
    python scripts/eval_modes.py RUN_DIR --batch-size 64   # checkpoint-step*.pt files too (--keep-checkpoints)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bnexp.analyses.eval_modes import accuracy_on_batches, shuffled_batches
from bnexp.config import DatasetConfig, ModelConfig, from_dict
from bnexp.data import load_data
from bnexp.models import build_model
from bnexp.store import RunDir, load_tensors
from bnexp.train import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-root")
    parser.add_argument("--batch-size", type=int, default=256, help="test batch size with batch statistics")
    args = parser.parse_args()
    run = RunDir(args.run)
    cfg = run.config()
    data = load_data(from_dict(DatasetConfig, cfg["dataset"], str(run.path)), torch.device("cpu"), args.data_root)
    model = build_model(from_dict(ModelConfig, cfg["model"], str(run.path)), data.inputs)
    checkpoints = sorted(run.path.glob("checkpoint-step*.pt")) or [run.path / "checkpoint.pt"]
    batches = shuffled_batches(data.test, args.batch_size, torch.Generator().manual_seed(0))
    print(f"{run.name}: test accuracy, eval mode vs batch statistics (shuffled batches of {args.batch_size})")
    for path in checkpoints:
        state = load_tensors(path, "the checkpoint", "it cannot be read back")
        model.load_state_dict(state["model"])
        eval_acc = evaluate(model, data, data.test, 500)[1]
        batch_acc = accuracy_on_batches(model, data, batches, batch_stats=True)
        print(
            f"step {state['step']:>6}: eval mode {eval_acc:.4f}, batch statistics {batch_acc:.4f}, "
            f"difference {batch_acc - eval_acc:+.4f}"
        )


if __name__ == "__main__":
    main()
