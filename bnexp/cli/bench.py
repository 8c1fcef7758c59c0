"""`bnexp bench`: the articles' training loop against bnexp's trainer and a bare loop."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnexp.cli.app import fail
from bnexp.errors import BnexpError


def _batch_sizes(text: str) -> tuple[int, ...]:
    """--batch-sizes 64,256 -> (64, 256); anything else is a usage error naming the form."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 2:
        raise BnexpError(f"--batch-sizes {text!r}: give batch sizes of 2 or more, comma-separated, e.g. 64,256")
    return sizes


def bench(
    reps: Annotated[int, typer.Option(min=1, help="Alternating repetitions per measurement.")] = 5,
    steps: Annotated[int, typer.Option(min=10, help="Training steps per repetition (LeNet5).")] = 300,
    data_root: Annotated[Path | None, typer.Option(help="Folder with Fashion-MNIST and MNIST (as for run).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    time_to_accuracy: Annotated[
        bool, typer.Option("--time-to-accuracy/--no-time-to-accuracy", help="Also time LeNet5-BN to 0.89.")
    ] = True,
    batch_sizes: Annotated[
        str, typer.Option(help="LeNet5 batch sizes for the loop and option comparisons, comma-separated.")
    ] = "64,256",
    verify_checksums: Annotated[
        bool,
        typer.Option(
            "--verify-checksums/--no-verify-checksums",
            help="Check the data files against torchvision's md5 list (off: your own files).",
        ),
    ] = True,
) -> None:
    """Throughput: the articles' loop vs bnexp's trainer vs a bare loop, side by side (medians, ratios),
    then host syncs, speed options, evaluation, other models, --jobs and time to 0.89 accuracy (~14 min on 2 cores).

    Example: bnexp bench --data-root ../shared/data --reps 5
    """
    from bnexp.bench import main as run_bench
    from bnexp.train import select_device

    try:
        select_device(device)
        sizes = _batch_sizes(batch_sizes)
        run_bench(reps, steps, data_root, device, time_to_accuracy, verify_checksums, sizes)
    except BnexpError as e:
        fail(e)
