"""Training one run: the names the rest of bnexp (runner, parallel, cli, bench, estimate, analyses) imports. The
code lives in bnexp.training, one module per job; `bnexp.training.run.train_run` is where a run starts."""

from bnexp.training.compute import core_slices, seed_everything, select_device, torch_threads
from bnexp.training.evaluate import evaluate
from bnexp.training.loop import Trainer, make_optimizer, steps_per_epoch
from bnexp.training.reporting import Silent
from bnexp.training.run import DistributedRunFailed, train_run
from bnexp.training.stop import StopRequest
from bnexp.training.summary import cpu_model, provenance

__all__ = [
    "DistributedRunFailed",
    "Silent",
    "StopRequest",
    "Trainer",
    "core_slices",
    "cpu_model",
    "evaluate",
    "make_optimizer",
    "provenance",
    "seed_everything",
    "select_device",
    "steps_per_epoch",
    "torch_threads",
    "train_run",
]
