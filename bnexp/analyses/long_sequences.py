"""A recurrent model's test accuracy on sequences longer than those it was trained on (a3: BN does poorly on
sequence data). Each test image is stretched vertically by repeating each row k times, so the sequence of rows
is k times as long and holds the same picture; k = 1 is the ordinary test set. Evaluated in eval mode: recurrent
BN then uses, beyond the longest trained step, the running statistics of that last step (Cooijmans et al.'s rule).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bnexp.config import LongSequencesConfig
from bnexp.data import Data

EVAL_BATCH = 500


def stretch(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, k H, W): every row k times in a row."""
    return x.repeat_interleave(k, dim=2)


def analyze(model: nn.Module, data: Data, settings: LongSequencesConfig) -> dict[str, Any]:
    model.eval()
    rows = []
    with torch.no_grad():
        for k in settings.stretch:
            correct = 0
            for start in range(0, len(data.test), EVAL_BATCH):
                images = data.test.images[start : start + EVAL_BATCH]
                labels = data.test.labels[start : start + EVAL_BATCH]
                correct += int((model(stretch(data.to_input(images), k)).argmax(1) == labels).sum())
            rows.append({"stretch": k, "steps": data.inputs.height * k, "test_acc": correct / len(data.test)})
    return {"rows": rows, "test_images": len(data.test)}
