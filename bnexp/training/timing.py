"""Timing a run: training time and images per second over each interval between timing records (at each
evaluation, and where the run stops). Not part of a run's state: a resumed run starts a new interval."""

from __future__ import annotations

import time
from typing import Any

import torch


class IntervalClock:
    def __init__(self, device: torch.device):
        self.device = device
        self.start = time.perf_counter()
        self.images = 0  # trained on since the last timing record, over all processes

    def restart(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since `restart`, counted once the device has done the work queued on it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - self.start

    def record(self, step: int, train_time: float, eval_time: float, probe_time: float) -> dict[str, Any]:
        """The timing.jsonl record of the interval that ends at `step`; the next one counts its images afresh."""
        speed = self.images / train_time if train_time > 0 else None
        self.images = 0
        return {
            "step": step,
            "train_time_s": train_time,
            "eval_time_s": eval_time,
            "images_per_s": speed,
            "probe_time_s": probe_time,
        }
