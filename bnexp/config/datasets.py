"""The datasets a config may name and how many classes each has (a run's chance level, ln C, is measured against
it). `bnexp.data.SOURCES` reads each one's files, one source per name of this table."""

from __future__ import annotations

from typing import Literal

DATASET_CLASSES: dict[str, int] = {"fashion_mnist": 10, "mnist": 10, "cifar100": 100}
DatasetName = Literal[tuple(DATASET_CLASSES)]  # type: ignore[valid-type]
