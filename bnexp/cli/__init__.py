"""The `bnexp` command line, the top layer: `app` (bnexp.cli.app) and its commands, one module per concern (run;
the commands that read results; bench), registered from one table in the order `bnexp --help` lists them."""

from collections.abc import Callable

from bnexp.cli import bench, results, run
from bnexp.cli.app import app

COMMANDS: dict[str, Callable[..., None]] = {
    "run": run.run,
    "plot": results.plot,
    "report": results.report,
    "export": results.export,
    "list": results.list_runs,
    "analyze": results.analyze,
    "bench": bench.bench,
}
for name, command in COMMANDS.items():
    app.command(name)(command)

__all__ = ["app", "main"]


def main() -> None:
    app()
