"""Distributed plumbing: which process this is, the collectives training needs, and the launcher.

A run with several processes is started by torchrun (`torchrun --nproc_per_node=N -m bnexp run CONFIG`, also
across machines: every process runs the command) or by `bnexp run CONFIG --nproc N`, which starts its processes
through torch's elastic launcher (`launch`; what they run is bnexp.ranks). Every process trains on its shard of
each global batch (the same seeded permutation everywhere), DistributedDataParallel averages the gradients, and
only rank 0 writes files. With one process, `World()` is a no-op and nothing here touches torch.distributed.
"""

from __future__ import annotations

import inspect
import os
import signal
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bnexp.config import ExperimentConfig
from bnexp.errors import BnexpError
from bnexp.lifetime import die_with_parent
from bnexp.nn import BatchNorm


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a data-parallel run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: Tensor) -> Tensor:
        """In place: the sum of `tensor` over all processes."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if `flag` is true on any (one collective)."""
        if self.size == 1:
            return flag
        return bool(self.sum_(torch.tensor([float(flag)], device=device)).item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every process (objects from our own processes only: this unpickles)."""
        if self.size == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def settle(self, seconds: float = 10.0) -> None:
        """Wait (at most `seconds`) until every process gets here; for exiting together after an error. A process
        that never comes only costs the wait (gloo's monitored barrier; skipped on other backends)."""
        if self.size > 1 and dist.is_initialized() and self.backend == "gloo":
            with suppress(RuntimeError):
                dist.monitored_barrier(timeout=timedelta(seconds=seconds))


def parallelize(model: nn.Module, exp: ExperimentConfig, world: World, device: torch.device) -> nn.Module:
    """The module that training calls: the model itself with one process; with several, the model with
    its BN synchronized if asked, wrapped in DistributedDataParallel (which averages the gradients).

    bn_sync: local keeps DDP's default buffer broadcast (every forward starts from rank 0's running
    statistics); with sync every rank computes the same running statistics, so nothing is broadcast."""
    if world.size == 1:
        return model
    if exp.bn_sync == "sync":
        for module in model.modules():
            if isinstance(module, BatchNorm):
                module.process_group = dist.group.WORLD
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # torch_batchnorm: CUDA only (validated)
    ids = [device.index] if device.type == "cuda" else None
    local = exp.bn_sync == "local"
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.14 names it forward_sync_buffers (the initial sync it keeps is harmless: all ranks start equal)
    sync = (
        {"forward_sync_buffers": local}
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else {"broadcast_buffers": local}
    )
    return ddp(model, device_ids=ids, **sync)


def sync_buffers(model: nn.Module, mode: str, world: World) -> None:
    """Make the running statistics of every process rank 0's (`rank0`) or their mean (`reduce`)."""
    buffers = [
        b
        for m in model.modules()
        for name, b in m.named_buffers(recurse=False)
        if name in ("running_mean", "running_var") and b is not None
    ]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    if mode == "reduce":
        dist.all_reduce(flat)
        flat /= world.size
    else:
        dist.broadcast(flat, src=0)
    for b, part in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
        b.copy_(part.view_as(b))


def world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 without torchrun); anything else is a usage error (exit 2)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= 65_536:
        raise BnexpError(
            f"WORLD_SIZE={raw!r} in the environment: expected the number of processes (a positive "
            "integer, as torchrun sets it); unset it to run one process"
        )
    return size


def from_environment(device_name: str) -> World:
    """The World that torchrun's environment describes (initializing the default process group), or one
    process. Backend: nccl on CUDA (`device_name` cuda, or auto on a machine with CUDA), gloo otherwise."""
    size = world_size()
    if size <= 1:
        return World()
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise BnexpError(
            f"WORLD_SIZE={size} but {', '.join(missing)} not set: start several processes with "
            "torchrun --nproc_per_node=N -m bnexp run CONFIG, or bnexp run CONFIG --nproc N"
        )
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    die_with_parent(os.getppid())  # a rank never trains on after its launcher (bnexp's or torchrun) was killed
    if not dist.is_initialized():
        # a rank that dies makes the others' collectives fail instead of waiting forever
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]), backend)


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, entry: Callable[..., None], args: tuple) -> tuple[int, str, int | None]:
    """Run `entry(*args, threads)` in `nproc` local processes through torch's elastic launcher (what torchrun
    uses), with torch's distributed environment set (see from_environment) and `threads` the share of this
    process's cores each may use. `entry` must be a module-level function (the processes are spawned, and
    `args` pickled to them). Returns (0, "", None); (1, what failed per rank, None); or, when this process got
    SIGINT/SIGTERM (the launcher forwards it to the processes, which stop at their next log window with a
    checkpoint), (1, "", the signal number)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.2,
    )
    # as torchrun does: the cores shared out, never more threads than cores (spinning OpenMP threads of
    # oversubscribed processes slow a step down by an order of magnitude)
    threads = max(1, len(os.sched_getaffinity(0)) // nproc)
    # the launcher installs its own SIGINT/SIGTERM handlers and leaves them: restore ours, or a signal during a
    # later single-process run of the same experiment would fail that run instead of stopping it
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        elastic_launch(config, entry)(*args, threads)
    except ChildFailedError as e:
        return 1, e.format_msg(), None
    except SignalException as e:
        return 1, "", int(e.sigval)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 0, "", None
