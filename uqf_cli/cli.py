"""The ``uqf`` command: a thin Typer layer over the stage modules.

Subcommands live in ``uqf_cli/commands/<name>.py``, each with a ``register(app)`` function; they
are discovered here and listed in pipeline order.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Annotated

import typer

from uqf_cli import __version__, commands
from uqf_cli.commands._common import install_signal_handlers, set_debug

PIPELINE_ORDER = [
    "prepare", "embed_text", "train_gcn", "fuse", "quantize", "inspect_sids",
    "train_rec", "evaluate", "recommend", "demo",
]

app = typer.Typer(
    name="uqf",
    help="Semantic IDs for generative recommendation: text + collaborative signals fused by the "
    "Unified Q-Former, quantized into hierarchical IDs, learned by TIGER or LC-Rec style models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"uqf {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """uqf: every stage reads and writes safetensors/JSONL files, so the steps compose in the shell."""
    set_debug(debug)


def _command_modules() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    rank = {name: k for k, name in enumerate(PIPELINE_ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


for _name in _command_modules():
    importlib.import_module(f"uqf_cli.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point; ``--debug`` is accepted anywhere on the command line."""
    args = sys.argv[1:]
    if "--debug" in args[1:]:
        args = ["--debug", *[a for a in args if a != "--debug"]]
    install_signal_handlers()
    app(args=args, prog_name="uqf")


if __name__ == "__main__":
    main()
