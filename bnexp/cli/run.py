"""`bnexp run`: train the runs of a config (or show the plan and budget of several)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bnexp.cli.app import fail
from bnexp.errors import BnexpError


def run(
    configs: Annotated[
        list[Path],
        typer.Argument(
            metavar="CONFIG...",
            help="Experiment config (YAML), e.g. configs/lenet5_bn.yaml; several (configs/*.yaml) with --dry-run: "
            "the budget of a whole catalogue.",
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a config key, KEY.PATH=VALUE (value parsed as YAML); repeatable, later wins. "
            "E.g. --set epochs=5 --set models[1].norm=torch_batchnorm --set seeds=[0,1]",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Working folder for the runs: OUT/<experiment name>/<run>/ (never the committed "
            "results/ unless --write-committed)."
        ),
    ] = Path("runs"),
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder with the datasets in torchvision's layout (default: $BNEXP_DATA, else bnexp's cache)."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda or mps (default: the config's device key).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Plain one-line-per-evaluation output, no bars.")
    ] = False,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Apply the config's `smoke:` overrides (tiny data, few steps) first.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Start every run over, deleting its previous results (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --restart deletes results.")] = False,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="Keep every checkpoint, not only the latest.")
    ] = False,
    jobs: Annotated[
        int, typer.Option(min=1, help="Runs at once, each in its own process pinned to cores/JOBS cores.")
    ] = 1,
    restart_run: Annotated[
        list[str] | None,
        typer.Option("--restart-run", help="Start this one run over (repeatable), e.g. one whose files are damaged."),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1024,
            help="Data-parallel processes per run (sets the config's `processes`; bnexp "
            "starts them with torch's elastic launcher, as torchrun). batch_size stays the global batch.",
        ),
    ] = None,
    max_runs: Annotated[
        int, typer.Option(min=1, help="Refuse a plan of more runs than this (a typo in a grid can ask for millions).")
    ] = 10_000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what each run would do and an estimated wall time; write nothing.")
    ] = False,
    write_committed: Annotated[
        bool,
        typer.Option(
            "--write-committed",
            help="Allow adding runs to a folder of committed results (one that "
            "carries .bnexp-committed, like this repository's results/); --restart stays refused there.",
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Train only runs I, I+N, I+2N, ... of the plan (0 <= I < N): N processes, "
            "on machines that share the folder, fill one experiment together.",
        ),
    ] = None,
) -> None:
    """Train every run of an experiment (grid x models x lr multipliers x seeds) and write the run store.

    Examples:

      bnexp run configs/lenet5_bn.yaml --data-root ../shared/data

      bnexp run configs/smoke.yaml --set epochs=2 --set optimizer.lr=0.01 --out /tmp/results

      bnexp run configs/learning_rate.yaml --jobs 2

      bnexp run configs/batch_size.yaml --jobs 2 --dry-run   # what would run, and for how long; writes nothing

      bnexp run configs/*.yaml --jobs 2 --dry-run   # every experiment's plan, and the whole catalogue's budget

      bnexp run configs/bn_distributed.yaml          # its runs with processes: 4 start 4 processes each

      bnexp run configs/lenet5_bn.yaml --nproc 2     # every run on 2 processes (gloo on CPU, nccl on CUDA)

      torchrun --nproc_per_node=2 -m bnexp run configs/lenet5_bn.yaml

      bnexp run configs/batch_size.yaml --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT   # a Slurm array

    Running the same command again skips finished runs and resumes interrupted ones from their
    last checkpoint. Ctrl-C (or SIGTERM) stops at the next step and writes a checkpoint. Processes that
    write one folder together (shards, or the same command started twice) never train one run twice: each run
    is claimed with its own lock, and a run another process holds is reported busy and left to it.

    Exit codes: 0 all runs completed (diverged runs count as completed), 1 a run failed,
    2 bad usage, config or data, 130/143 stopped by SIGINT/SIGTERM.
    """

    from bnexp.distributed import from_environment, shutdown
    from bnexp.job import Shard, load_job
    from bnexp.preflight import check_committed, show_plan, show_plans
    from bnexp.progress import duration, make_reporter
    from bnexp.runner import run as run_job
    from bnexp.train import DistributedRunFailed, StopRequest
    from bnexp.wording import plural

    if len(configs) > 1 and not dry_run:
        fail(BnexpError(f"{len(configs)} configs: give one experiment to run, or add --dry-run for their budget"))
    if len(configs) > 1 and (restart or restart_run):
        fail(BnexpError("--restart and --restart-run name one experiment's runs: give one config"))
    if device is not None and device not in ("auto", "cpu", "cuda", "mps"):
        fail(BnexpError(f"--device: unknown value {device!r}; allowed: auto, cpu, cuda, mps"))
    if (nproc or 1) > 1 and jobs > 1:
        fail(BnexpError("--nproc and --jobs cannot be combined: --jobs runs single-process runs side by side"))
    world = None
    try:
        options = dict(
            out=out,
            data_root=data_root,
            device_name=device,
            restart=restart,
            restart_runs=tuple(restart_run or ()),
            keep_checkpoints=keep_checkpoints,
            jobs=jobs,
            shard=Shard.parse(shard) if shard is not None else None,
        )

        committed = (out, restart or bool(restart_run), write_committed)  # the dry run refuses what the run does
        if dry_run and len(configs) > 1:  # each experiment's plan, then the catalogue's budget
            # each config on its own processes: --nproc and torchrun's WORLD_SIZE are for one experiment's runs
            catalogue = [load_job(c, set_ or [], smoke, max_runs, from_torchrun=False, **options) for c in configs]
            check_committed(*committed)
            total = show_plans(catalogue, make_reporter(True))
            typer.echo(
                f"catalogue: {plural(len(configs), 'experiment')}, {plural(total.runs, 'run')} to train, "
                f"{duration(total.run_seconds)} of run time, {duration(total.wall_seconds)} of wall time with "
                f"--jobs {jobs} (one experiment after another); nothing was written"
            )
            raise typer.Exit(0)
        job = load_job(configs[0], set_ or [], smoke, max_runs, nproc, **options)
        check_committed(*committed)
        if dry_run:
            show_plan(job, make_reporter(True))
            raise typer.Exit(0)
        if restart and not yes:
            if not sys.stdin.isatty():
                raise BnexpError("--restart deletes previous results of this experiment; add --yes to confirm")
            typer.confirm(f"Delete the previous results of {job.cfg.name} under {out} and start over?", abort=True)
        stop = StopRequest()
        stop.install()
        world = from_environment(device or job.cfg.device)
        # concurrent bars would overwrite each other
        code = run_job(job, make_reporter(quiet or jobs > 1 or world.size > 1), stop, world)
    except BnexpError as e:
        if world is not None:  # under torchrun: every rank says why before any exits (torchrun ends the rest)
            typer.echo(f"error: {e}", err=True)
            world.settle()
            raise typer.Exit(e.exit_code) from None
        fail(e)
    except DistributedRunFailed as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    finally:
        if world is not None:
            shutdown(world)
    raise typer.Exit(code)
