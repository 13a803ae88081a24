"""The `codefill` command: thin typer adapters over the engine and the quantizer.

Each command group lives in its own module with a `register(app)` function, so features can be added without
touching the others. User-facing failures are `CodefillError`s: printed on one line, exit with their class's code
(cli/common.py, EXIT_CODES).
"""

from __future__ import annotations

import logging
import platform
import sys
from importlib import metadata

import typer

from codefill import __version__
from codefill.engine.errors import CodefillError

from .common import exit_code

app = typer.Typer(
    name="codefill",
    help="Local, offline fill-in-the-middle code completion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order they appear in --help. A module listed here that fails to import is a bug.
COMMAND_MODULES = (
    "codefill.cli.complete",
    "codefill.cli.models",
    "codefill.cli.serve",
    "codefill.cli.quantize_cmd",
    "codefill.cli.eval_cmd",
    "codefill.cli.bench",
    "codefill.cli.fill",
    "codefill.cli.stats_cmd",
)


def _register_all() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet in this checkout
                continue
            raise
        module.register(app)


def version_line() -> str:
    """What a bug report needs: codefill's version, the llama.cpp binding's, Python's and the platform."""
    try:
        binding = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        binding = "not installed"
    return (f"codefill {__version__} (llama-cpp-python {binding}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()})")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the engine does to stderr."),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="Print the versions of codefill, llama-cpp-python and Python, and exit."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="codefill: %(message)s", stream=sys.stderr
    )


def main() -> None:
    _register_all()
    try:
        status = app(standalone_mode=False)
        if status == 130:  # click turns Ctrl-C into this return value when it does not exit itself
            typer.echo("codefill: interrupted", err=True)
            sys.exit(130)
        if isinstance(status, int) and status:
            sys.exit(status)
    except CodefillError as exc:
        typer.echo(f"codefill: error: {exc}", err=True)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        typer.echo("codefill: interrupted", err=True)
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = getattr(exc, "code", 0)
        sys.exit(code or 0)
    except typer.Abort:
        typer.echo("codefill: aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        # Usage errors from click (typer vendors its own copy, so match by shape, not by class).
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
