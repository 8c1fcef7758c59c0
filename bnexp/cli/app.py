"""The `bnexp` command line: the Typer app, its root options, and how an error becomes exit 2 (or the error's own
code) with one line on stderr. The commands are in the modules beside this one."""

from __future__ import annotations

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


def fail(e: BnexpError) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(e.exit_code)
