"""The `bnexp` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

import bnexp
from bnexp.errors import BnexpError

app = typer.Typer(
    help="Reproduce, measure and go beyond the classic Batch Normalization experiments.\n\n"
    "Example: bnexp run configs/lenet5_bn.yaml --data-root ../shared/data",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bnexp {bnexp.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reproduce, measure and go beyond the classic Batch Normalization experiments."""


def _batch_sizes(text: str) -> tuple[int, ...]:
    """--batch-sizes 64,256 -> (64, 256); anything else is a usage error naming the form."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 2:
        raise BnexpError(f"--batch-sizes {text!r}: give batch sizes of 2 or more, comma-separated, e.g. 64,256")
    return sizes


def _fail(e: BnexpError) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(e.exit_code)


@app.command()
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
        _fail(BnexpError(f"{len(configs)} configs: give one experiment to run, or add --dry-run for their budget"))
    if len(configs) > 1 and (restart or restart_run):
        _fail(BnexpError("--restart and --restart-run name one experiment's runs: give one config"))
    if device is not None and device not in ("auto", "cpu", "cuda", "mps"):
        _fail(BnexpError(f"--device: unknown value {device!r}; allowed: auto, cpu, cuda, mps"))
    if (nproc or 1) > 1 and jobs > 1:
        _fail(BnexpError("--nproc and --jobs cannot be combined: --jobs runs single-process runs side by side"))
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

        def load(config: Path):
            return load_job(config, set_ or [], smoke, max_runs, nproc, **options)

        check_committed(out, restart or bool(restart_run), write_committed)  # the dry run refuses what the run does
        if dry_run and len(configs) > 1:  # each experiment's plan, then the catalogue's budget
            total = show_plans((load(config) for config in configs), make_reporter(True))
            typer.echo(
                f"catalogue: {plural(len(configs), 'experiment')}, {plural(total.runs, 'run')} to train, "
                f"{duration(total.run_seconds)} of run time, {duration(total.wall_seconds)} of wall time with "
                f"--jobs {jobs} (one experiment after another); nothing was written"
            )
            raise typer.Exit(0)
        if dry_run:
            show_plan(load(configs[0]), make_reporter(True))
            raise typer.Exit(0)
        job = load(configs[0])
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
        _fail(e)
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


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    fmt: Annotated[str, typer.Option("--format", help="png, svg or pdf.")] = "png",
    out: Annotated[
        Path | None, typer.Option(help="Write figures to OUT/<experiment>/ (default: <experiment>/figures/).")
    ] = None,
) -> None:
    """Render every figure that fits each experiment's recorded data. Reads files only; never trains.

    Examples:

      bnexp plot results

      bnexp plot results/lenet5_bn --format svg --out /tmp/figures
    """
    from bnexp.plots import render
    from bnexp.results import find_experiments

    if fmt not in ("png", "svg", "pdf"):
        _fail(BnexpError(f"--format: unknown value {fmt!r}; allowed: png, svg, pdf"))
    try:
        root = out if out else results  # the folders below it are checked: no link is written through
        _writable_folder(root, "--out" if out else "the results folder")
        for exp in find_experiments(results):
            target = (out / exp.dir.name) if out else exp.dir / "figures"  # by folder: names may collide
            for path in render(exp, target, fmt, root):
                typer.echo(str(path))
    except BnexpError as e:
        _fail(e)
    except OSError as e:
        _fail(BnexpError(f"cannot write the figures ({e.strerror or e})"))


def _writable_folder(folder: Path, what: str) -> None:
    """Create `folder` if needed; a file in the way or no permission is a clean error (exit 2)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BnexpError(f"{what}: {folder} is a file, not a folder; choose another") from None
    except OSError as e:
        raise BnexpError(f"{what}: cannot create {folder} ({e.strerror or e}); choose another") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BnexpError(f"{what}: {folder} is not writable; choose another")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Report file (default: RESULTS/REPORT.md, or stdout with --json).")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Write the report as JSON instead of Markdown.")] = False,
    readme: Annotated[
        Path | None,
        typer.Option(
            help="Also write the claims table into this Markdown file, between its lines "
            "'<!-- claims:begin -->' and '<!-- claims:end -->' (e.g. README.md)."
        ),
    ] = None,
) -> None:
    """The articles' claims, each with its statistic and verdict, then per-experiment tables: our runs next to
    the articles' figures.

    Examples:

      bnexp plot results && bnexp report results

      bnexp report results --readme README.md     # refresh README's claims table too

      bnexp report results/lenet5_bn --json > lenet5_bn.json
    """

    from bnexp.claims import claims_excerpt
    from bnexp.report import build, to_markdown
    from bnexp.results import find_experiments
    from bnexp.store import check_replaceable, strict_json, write_atomic

    try:
        data = build(find_experiments(results))
        if json_:
            text = strict_json(data, indent=2, default=str)
            if out is None:
                typer.echo(text)
                return
        else:
            out = out or results / "REPORT.md"
            text = to_markdown(data, out.parent)
        if out.is_dir():
            raise BnexpError(f"--out: {out} is a folder; give a file name, e.g. {out / 'REPORT.md'}")
        _writable_folder(out.parent, "--out")
        check_replaceable(out, "--out")
        if readme is not None:
            check_replaceable(readme, "--readme")
            _replace_block(readme, claims_excerpt(data["claims"], readme.parent, results))
        write_atomic(out, text + "\n")
    except BnexpError as e:
        _fail(e)
    except OSError as e:
        _fail(BnexpError(f"--out: cannot write {out} ({e.strerror or e})"))
    typer.echo(str(out))


def _replace_block(path: Path, lines: list[str]) -> None:
    """Put `lines` between the claims markers of a Markdown file, or say why not (exit 2)."""
    from bnexp.claims import CLAIMS_BEGIN, CLAIMS_END
    from bnexp.store import write_atomic

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BnexpError(f"--readme: cannot read {path} ({e.strerror or e})") from None
    if (
        text.count(CLAIMS_BEGIN) != 1
        or text.count(CLAIMS_END) != 1
        or text.index(CLAIMS_BEGIN) > text.index(CLAIMS_END)
    ):
        raise BnexpError(f"--readme: {path} needs one line {CLAIMS_BEGIN} and, after it, one line {CLAIMS_END}")
    head, rest = text.split(CLAIMS_BEGIN)
    _, tail = rest.split(CLAIMS_END)
    write_atomic(path, head + CLAIMS_BEGIN + "\n" + "\n".join(lines) + "\n" + CLAIMS_END + tail)


@app.command()
def export(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    csv_: Annotated[
        Path | None, typer.Option("--csv", help="Write DIR/metrics.csv (one row per logged value) and DIR/runs.csv.")
    ] = None,
    tensorboard: Annotated[
        Path | None, typer.Option(help="Write TensorBoard event files, DIR/<experiment>/<run>/ (needs tensorboard).")
    ] = None,
) -> None:
    """Export run files for pandas or a spreadsheet (CSV) and for TensorBoard. Reads files only; never trains.

    Examples:

      bnexp export results --csv /tmp/bnexp-csv        # then pandas.read_csv("/tmp/bnexp-csv/metrics.csv")

      bnexp export results --tensorboard /tmp/tb && tensorboard --logdir /tmp/tb
    """
    from bnexp.export import require_tensorboard, to_csv, to_tensorboard
    from bnexp.results import find_experiments

    if csv_ is None and tensorboard is None:
        _fail(BnexpError("export: give --csv DIR, --tensorboard DIR or both"))
    try:
        if tensorboard is not None:
            require_tensorboard()
        experiments = find_experiments(results)
        for folder, write in ((csv_, to_csv), (tensorboard, to_tensorboard)):
            if folder is not None:
                _writable_folder(folder, "--csv" if write is to_csv else "--tensorboard")
                paths = write(experiments, folder)
                typer.echo(f"{folder}: {len(paths)} {'files' if write is to_csv else 'runs'}")
    except BnexpError as e:
        _fail(e)
    except OSError as e:
        _fail(BnexpError(f"export: cannot write ({e.strerror or e})"))


@app.command("list")
def list_runs(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per run, for scripts.")] = False,
) -> None:
    """One line per run of each experiment's plan: status (running while a process trains it, interrupted, not
    started, ...), seed, final and best test accuracy, training time. Reads only: takes no lock, writes nothing.

    Example: bnexp list results
    """
    from bnexp.results import NEAR_CHANCE, find_experiments, run_states
    from bnexp.store import strict_json

    try:
        experiments = find_experiments(results)
    except BnexpError as e:
        _fail(e)
    rows = [
        {
            "experiment": e.name,
            "run": name,
            "status": state,
            "seed": r.config.get("seed") if r else None,
            "final_test_acc": r.summary.final_test_acc if r else None,
            "best_test_acc": r.summary.best_test_acc if r else None,
            "train_time_s": r.summary.train_time_s if r else None,
            "outcome": r.course["outcome"] if r else None,
        }
        for e in experiments
        for name, r, state in run_states(e)
    ]
    if json_:
        for row in rows:
            typer.echo(strict_json(row))
        return
    typer.echo(
        f"{'experiment':<24} {'run':<34} {'status':<12} {'seed':>4} {'final acc':>9} {'best acc':>9} {'time':>8}"
    )
    for row in rows:
        acc = lambda v: f"{v:.4f}" if v is not None else "–"  # noqa: E731
        t = f"{row['train_time_s']:.0f}s" if row["train_time_s"] is not None else "–"
        mark = {"never_left_chance": "*", "fell_back": "**"}.get(row["outcome"], "")
        seed = "–" if row["seed"] is None else row["seed"]
        typer.echo(
            f"{row['experiment']:<24} {row['run']:<34} {row['status'] + mark:<12} {seed!s:>4} "
            f"{acc(row['final_test_acc']):>9} {acc(row['best_test_acc']):>9} {t:>8}"
        )
    if any(row["outcome"] in NEAR_CHANCE for row in rows):
        typer.echo("* never left chance (no logged training loss below 0.9 ln C); ** left chance, then fell back to it")


@app.command()
def analyze(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    data_root: Annotated[Path | None, typer.Option(help="Folder with the datasets (as for run).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
    force: Annotated[bool, typer.Option("--force", help="Redo analyses that are already done.")] = False,
) -> None:
    """Post-training analyses (the config's `analyses:`) on every finished run's final weights, written to
    <run>/analyses/<name>.json; done ones are skipped. `bnexp run` also runs them after training.

    Examples:

      bnexp analyze results/eval_mode --data-root ../shared/data

      bnexp analyze results --force
    """
    from bnexp.analyses import analyze_experiment
    from bnexp.results import experiment_dirs
    from bnexp.train import select_device

    try:
        dev = select_device(device)
        problems = sum(
            analyze_experiment(d, data_root, dev, force, typer.echo, results) for d in experiment_dirs(results)
        )
    except BnexpError as e:
        _fail(e)
    raise typer.Exit(1 if problems else 0)


@app.command()
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
        _fail(e)


def main() -> None:
    app()
