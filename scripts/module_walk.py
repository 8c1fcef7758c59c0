"""The walk of a config through `bnexp run`: which bnexp modules control passes through, and how often it comes
back to one it had already left (issue 32, item 3). Runs the command in this process under `sys.setprofile`.

    python scripts/module_walk.py                 # bnexp run configs/smoke.yaml --out TMP --dry-run
    python scripts/module_walk.py --real          # bnexp run configs/smoke.yaml --out TMP (trains its 2 runs)
    python scripts/module_walk.py --rank          # one process of that run with --nproc 2 (see below)
    python scripts/module_walk.py --real --walk   # and the walk itself, one call per line

Data: $BNEXP_DATA, else ../shared/data beside this checkout. Definitions (the same for any version of bnexp):

- a *cross-module call* is a call of a Python function of bnexp module B (bnexp.runner, bnexp.nn.batchnorm, ...)
  whose nearest bnexp frame below it on the stack is in another bnexp module A (frames of torch, typer,
  contextlib in between are looked through: a callback from torch into bnexp is a call from the bnexp module
  that called torch). Left out: import-time code (every bnexp module is imported before the walk starts), code
  generated at run time (a dataclass's __init__, __eq__, __hash__ have no source file), and everything while a
  run trains (below bnexp.train.train_run, which is counted: training is train.py's, and its per-step calls
  would swamp the walk of the config up to and back from training);
- the *walk* is the sequence of cross-module calls, each call site (A's file and line, B's function) taken
  once, at its first occurrence: a loop over runs repeats its call sites and adds nothing;
- a module's *visits* are the walk's calls into it; a *return to a module already left* is a visit after the
  first (control was in B, went elsewhere, and a call brings it back): their total is the sum over modules of
  visits - 1. The raw count (every cross-module call, repeats included) is printed too.

`--by-package`: the same walk with each package of bnexp as one unit (bnexp.config, bnexp.claims, bnexp.plots, bnexp.nn;
bnexp.training as bnexp.train, the module it was split from), so that a module split into a package of modules
compares with what it was: a call between two modules of one package is then no cross-module call.

`--rank`: what one process of a multi-process run executes, from the entry point the launcher starts to its
exit, here in this process as a world of one (no WORLD_SIZE: it trains the runs alone). Before issue 32 that
entry was `bnexp.cli.rank_main(argv, threads)`, which ran `bnexp run ARGV` again; since, it is
`bnexp.ranks.rank_main(job, actions, threads)`. What the launching process prepares for it is not walked.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pkgutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]


BY_PACKAGE = False  # --by-package: a package (bnexp.config, bnexp.training, ...) counts as one module


def bnexp_module(frame: FrameType | None) -> str | None:
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    if not (name == "bnexp" or name.startswith("bnexp.")):
        return None
    if BY_PACKAGE:  # bnexp.config.load -> bnexp.config; bnexp.training.loop -> bnexp.train, the module it was
        name = ".".join(name.split(".")[:2]).replace("bnexp.training", "bnexp.train")
    return name


def caller(frame: FrameType) -> FrameType | None:
    """The nearest bnexp frame below `frame`."""
    f = frame.f_back
    while f is not None and bnexp_module(f) is None:
        f = f.f_back
    return f


class Walk:
    def __init__(self, training: CodeType) -> None:
        self.training = training  # bnexp.train.train_run's code: what runs below it is left out
        self.inside = 0
        self.sites: set[tuple] = set()
        self.walk: list[tuple[str, int, str, str, str]] = []  # (from module, line, from function, to module, to)
        self.raw: Counter[str] = Counter()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if frame.f_code is self.training and event == "return":
            self.inside -= 1
        if event != "call" or self.inside:
            return
        if frame.f_code is self.training:
            self.inside += 1
        into = bnexp_module(frame)
        if into is None or frame.f_code.co_name == "<module>" or not frame.f_code.co_filename.endswith(".py"):
            return
        below = caller(frame)
        source = bnexp_module(below)
        if source == into:
            return
        self.raw[into] += 1
        line = below.f_lineno if below is not None else 0
        function = below.f_code.co_qualname if below is not None else "-"
        site = (source, line, function, into, frame.f_code.co_qualname)
        if site not in self.sites:
            self.sites.add(site)
            self.walk.append((source or "(entry)", line, function, into, frame.f_code.co_qualname))

    def visits(self) -> Counter[str]:
        return Counter(into for *_, into, _ in self.walk)

    def returns(self) -> int:
        return sum(n - 1 for n in self.visits().values())


def import_everything() -> None:
    import bnexp

    for info in pkgutil.walk_packages(bnexp.__path__, "bnexp."):
        if info.name != "bnexp.__main__":  # running it is `bnexp`
            with contextlib.suppress(ImportError):  # an optional dependency missing: that module is never walked
                importlib.import_module(info.name)


def command(config: str, out: str, real: bool, extra: list[str]) -> tuple[list[str], Callable[[], Any]]:
    from bnexp.cli import app

    argv = ["run", config, "--out", out, *([] if real else ["--dry-run"]), *extra]
    return argv, lambda: app(argv, standalone_mode=False)


def rank(config: str, out: str, extra: list[str]) -> tuple[list[str], Callable[[], Any]]:
    """One process of `bnexp run CONFIG --nproc 2`, as the launcher starts it (its inputs prepared here)."""
    import torch

    from bnexp import cli
    from bnexp.config import expand_grid
    from bnexp.validate import load

    threads = torch.get_num_threads()
    overrides = [a.split("=", 1)[1] for a in extra if a.startswith("--set=")]
    cfg = load(config, [*overrides, "processes=2"])
    (Path(out) / cfg.name).mkdir(parents=True, exist_ok=True)  # the launcher's, before it starts the processes
    actions = {p.name: "start" for p in expand_grid(cfg)}
    if hasattr(cli, "rank_main"):  # before issue 32: `bnexp run ARGV` again, the actions in the environment
        from bnexp.distributed import LAUNCHER_ENV

        os.environ[LAUNCHER_ENV] = json.dumps(actions)
        argv = [config, f"--out={out}", "--quiet", "--nproc=2", *extra]
        return ["cli.rank_main", *argv], lambda: cli.rank_main(argv, threads)
    from bnexp.job import load_job
    from bnexp.ranks import rank_main

    job = load_job(config, overrides, nproc=2, out=Path(out))
    return ["ranks.rank_main", f"Job({cfg.name}, {len(job.runs)} runs)"], lambda: rank_main(job, actions, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "smoke.yaml"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help="train the runs (default: --dry-run)")
    mode.add_argument("--rank", action="store_true", help="one process of the run with --nproc 2")
    parser.add_argument("--out", default=None, help="the --out folder (default: a fresh temp folder)")
    parser.add_argument("--walk", action="store_true", help="print the walk, one cross-module call per line")
    parser.add_argument("--by-package", action="store_true", help="count each package of bnexp as one module")
    parser.add_argument("--json", default=None, help="also write the counts and the walk to this JSON file")
    parser.add_argument("extra", nargs="*", help="more `bnexp run` arguments, after --: -- --set=epochs=1")
    args = parser.parse_args()
    global BY_PACKAGE
    BY_PACKAGE = args.by_package
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("BNEXP_DATA", str(REPO.parent / "shared" / "data"))
    import_everything()
    from bnexp import train

    out = args.out or tempfile.mkdtemp(prefix="module-walk-")
    argv, call = rank(args.config, out, args.extra) if args.rank else command(args.config, out, args.real, args.extra)
    walk = Walk(train.train_run.__code__)
    sys.setprofile(walk)
    try:
        code = call()
    except SystemExit as e:
        code = e.code
    finally:
        sys.setprofile(None)
    visits = walk.visits()
    print(f"\n{' '.join(argv)}: exit {code}")
    print(f"{'module':<28} {'visits':>6} {'raw':>5}")
    for module, n in sorted(visits.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{module:<28} {n:>6} {walk.raw[module]:>5}")
    print(
        f"{len(visits)} modules, a walk of {len(walk.walk)} cross-module calls, {walk.returns()} returns to a "
        f"module already left ({sum(walk.raw.values())} cross-module calls with repeats)"
    )
    if args.walk:
        for source, line, function, into, callee in walk.walk:
            print(f"  {source}:{line} ({function}) -> {into}.{callee}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "argv": argv,
                    "exit": code,
                    "visits": dict(visits),
                    "raw": dict(walk.raw),
                    "returns": walk.returns(),
                    "walk": walk.walk,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
