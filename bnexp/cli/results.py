"""The commands that read a results folder and never train: plot, report, export, list, analyze."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from bnexp.cli.app import fail
from bnexp.errors import BnexpError


def plot(
    results: Annotated[Path, typer.Argument(help="A results folder (all experiments) or one experiment's folder.")],
    fmt: Annotated[str, typer.Option("--format", help="png, svg or pdf.")] = "png",
    out: Annotated[
        Path | None, typer.Option(help="Write figures to OUT/<experiment>/ (default: <experiment>/figures/).")
    ] = None,
) -> None:
    """Render every figure that fits each experiment's recorded data, and the claims figure (claims.png: each
    claim's effect, interval and verdict) in the results folder (or OUT). Reads files only; never trains.

    Examples:

      bnexp plot results

      bnexp plot results/lenet5_bn --format svg --out /tmp/figures
    """
    from bnexp.plots import render, render_claims
    from bnexp.results import find_experiments

    if fmt not in ("png", "svg", "pdf"):
        fail(BnexpError(f"--format: unknown value {fmt!r}; allowed: png, svg, pdf"))
    try:
        root = out if out else results  # the folders below it are checked: no link is written through
        _writable_folder(root, "--out" if out else "the results folder")
        experiments = find_experiments(results)
        for exp in experiments:
            target = (out / exp.dir.name) if out else exp.dir / "figures"  # by folder: names may collide
            for path in render(exp, target, fmt, root):
                typer.echo(str(path))
        if any(exp.claims for exp in experiments):
            typer.echo(str(render_claims(experiments, root, fmt, root)))
    except BnexpError as e:
        fail(e)
    except OSError as e:
        fail(BnexpError(f"cannot write the figures ({e.strerror or e})"))


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
            claims = [c.model_dump() for c in data["claims"]]  # the declared results, as plain data
            text = strict_json({**data, "claims": claims}, indent=2, default=str)
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
        fail(e)
    except OSError as e:
        fail(BnexpError(f"--out: cannot write {out} ({e.strerror or e})"))
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
        fail(BnexpError("export: give --csv DIR, --tensorboard DIR or both"))
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
        fail(e)
    except OSError as e:
        fail(BnexpError(f"export: cannot write ({e.strerror or e})"))


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
        fail(e)
    rows = [
        {
            "experiment": e.name,
            "run": name,
            "status": state,
            "seed": r.config.get("seed") if r else None,
            "final_test_acc": r.summary.final_test_acc if r else None,
            "best_test_acc": r.summary.best_test_acc if r else None,
            "train_time_s": r.summary.train_time_s if r else None,
            "outcome": r.course.outcome if r else None,
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
        fail(e)
    raise typer.Exit(1 if problems else 0)
