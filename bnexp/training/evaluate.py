"""Evaluation: loss and accuracy over a split in eval mode, and the eval record a run logs at each evaluation
(test split, the training subset if configured, dead ReLU units)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import ExperimentConfig
from bnexp.data import Data, Split, balanced_subset
from bnexp.distributed import World, sync_buffers
from bnexp.probes.dead_units import PROBE_IMAGES, dead_units, relu_points
from bnexp.training.compute import autocast


def evaluate(
    model: nn.Module, data: Data, split: Split, batch_size: int, precision: str = "fp32", world: World = World()
) -> tuple[float, float]:
    """Mean loss and accuracy in eval mode over the whole split; one host sync at the end. With several
    processes each evaluates a contiguous shard and the sums are added up."""
    was_training = model.training
    model.eval()
    device = split.labels.device
    lo, hi = len(split) * world.rank // world.size, len(split) * (world.rank + 1) // world.size
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), autocast(device, precision):
        for start in range(lo, hi, batch_size):
            end = min(start + batch_size, hi)
            logits = model(data.to_input(split.images[start:end]))
            labels = split.labels[start:end]
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
    model.train(was_training)
    loss, n_correct = world.sum_(torch.stack([loss_sum, correct.to(loss_sum.dtype)])).tolist()
    return loss / len(split), n_correct / len(split)


class RunEvaluation:
    """What one run measures at each evaluation. `forward` computes (the compiled or data-parallel wrapper where
    there is one); `model` is the plain model, whose buffers and hooks the running statistics and probes use."""

    def __init__(
        self, model: nn.Module, forward: Callable, data: Data, exp: ExperimentConfig, device: torch.device, world: World
    ):
        self.model, self.data, self.exp, self.world = model, data, exp, world
        # several processes evaluate their own shards of the test set with the plain model (no DDP collectives)
        self.forward = forward if world.size == 1 else model
        self.train_subset = None
        if exp.eval_train_subset:
            idx = balanced_subset(data.train.labels.cpu(), exp.eval_train_subset, data.inputs.num_classes)
            self.train_subset = Split(data.train.images[idx.to(device)], data.train.labels[idx.to(device)])
        first = data.train.images[:PROBE_IMAGES]  # the same fixed images in every run of a dataset
        self.dead_probe_batch = data.to_input(first) if relu_points(model) else None

    def sync_running_stats(self) -> None:
        """Local BN with several processes: make every rank's running statistics rank 0's (or, with
        `bn_running_stats: reduce`, their mean) before they are used (at each evaluation)."""
        if self.world.size > 1 and self.exp.bn_sync == "local":
            sync_buffers(self.model, self.exp.bn_running_stats, self.world)

    def record(self, step: int, per_epoch: int) -> dict[str, Any]:
        """The eval record at `step`: test (and training-subset) loss and accuracy, dead units on rank 0."""
        self.sync_running_stats()
        record: dict[str, Any] = {"event": "eval", "step": step, "epoch": step / per_epoch}
        for prefix, split in (("test", self.data.test), ("train", self.train_subset)):
            if split is not None:
                record[f"{prefix}_loss"], record[f"{prefix}_acc"] = evaluate(
                    self.forward, self.data, split, self.exp.eval_batch_size, self.exp.precision, self.world
                )
        if self.dead_probe_batch is not None and self.world.main:
            dead, units = dead_units(self.model, self.dead_probe_batch).tolist()
            record["dead_units"] = sum(dead) / sum(units)
            record["dead_units_per_layer"] = [d / u for d, u in zip(dead, units, strict=True)]
        return record
