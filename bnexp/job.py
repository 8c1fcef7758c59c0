"""One `bnexp run` of one config, as data: the Job holds the config, its runs (the grid expanded once, here) and
how they are to run (the command's options). Everything that needs the runs (the checks and the dry run in
bnexp.preflight, the run in bnexp.runner, the executors, the processes bnexp starts) is handed the Job's list;
nothing expands the grid again."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnexp.config import MAX_RUNS, ExperimentConfig, RunPlan, expand_grid
from bnexp.distributed import World, world_size
from bnexp.errors import BnexpError
from bnexp.train import select_device
from bnexp.validate import load


@dataclasses.dataclass(frozen=True)
class Shard:
    """`--shard INDEX/COUNT`: this process trains the runs whose position in the plan is INDEX modulo COUNT."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        digits = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit also takes '²'
        if not (digits.fullmatch(index) and digits.fullmatch(count) and int(index) < int(count)):
            raise BnexpError(
                f"--shard {text}: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/4 "
                "(Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )
        return cls(int(index), int(count))

    def holds(self, position: int) -> bool:
        return position % self.count == self.index


@dataclasses.dataclass(frozen=True)
class Job:
    """One `bnexp run` of one config: the config, its runs in plan order, and how they are run (the command's
    options). Plain data, pickled as is to the processes of a multi-process run."""

    cfg: ExperimentConfig
    runs: list[RunPlan]
    out: Path
    data_root: Path | None = None
    device_name: str | None = None  # --device, which overrides every cell's own
    restart: bool = False
    restart_runs: tuple[str, ...] = ()
    keep_checkpoints: bool = False
    jobs: int = 1  # --jobs: one-process runs at once, each in a worker process
    shard: Shard | None = None
    config_dir: Path | None = None  # where the config's reference series files are

    @classmethod
    def of(
        cls,
        cfg: ExperimentConfig,
        out: str | Path,
        data_root: str | Path | None = None,
        device_name: str | None = None,
        **options: Any,
    ) -> Job:
        """The job of `cfg`: its grid expanded, once."""
        return cls(cfg, expand_grid(cfg), Path(out), data_root, device_name, **options)

    @property
    def out_dir(self) -> Path:
        return self.out / self.cfg.name

    def mine(self, position: int) -> bool:
        """Whether the run at `position` of the plan is this shard's (every run without --shard)."""
        return self.shard is None or self.shard.holds(position)

    def device(self, world: World = World()) -> Any:
        """The device the runs train on: --device's, else the config's; a process of a multi-process run on CUDA
        takes its own GPU (its local rank)."""
        device = select_device(self.device_name or self.cfg.device)
        if world.size > 1 and device.type == "cuda":
            device = select_device("cuda", world.local_rank)
        return device

    def cell_device(self, plan: RunPlan, device: Any) -> Any:
        """The device a grid cell trains on: --device's, else the cell's own `device` where a grid sets it."""
        if self.device_name or plan.experiment.device == self.cfg.device:
            return device
        return select_device(plan.experiment.device)


def load_job(
    config: Path,
    overrides: Sequence[str] = (),
    smoke: bool = False,
    max_runs: int = MAX_RUNS,
    nproc: int | None = None,
    *,
    from_torchrun: bool = True,
    **options: Any,
) -> Job:
    """The Job of a config file: the config read and checked (`bnexp.validate.load`), every run on `nproc`
    processes if given (--nproc) or, with `from_torchrun`, on as many as the user's torchrun started (its WORLD_SIZE),
    and `options` (Job's fields) for how it runs."""
    torchrun = world_size() if from_torchrun else 1  # 1 without torchrun
    if nproc is not None and torchrun > 1:
        raise BnexpError("--nproc starts its own processes; under torchrun leave it out")
    processes = nproc or (torchrun if torchrun > 1 else None)
    cfg = load(config, [*overrides, *([f"processes={processes}"] if processes else [])], smoke, max_runs)
    if processes and any("processes" in (k.strip() for k in key.split(",")) for key in cfg.grid):
        raise BnexpError(
            f"{config}: the config's grid varies processes; leave out --nproc and torchrun, "
            "bnexp run starts each run's processes itself"
        )
    return Job.of(cfg, config_dir=Path(config).parent, **options)
