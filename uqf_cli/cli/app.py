"""The ``uqf`` command: a thin Typer layer over the stage modules.

Each subcommand is a top-level function of ``uqf_cli/cli/<name>.py`` (``@cli_command`` over
``@shared_options(...)``), registered below by name, one line each, in pipeline order (the order ``uqf --help``
lists them): ``from uqf_cli.cli.prepare import prepare`` gives the command itself, to read or call.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from uqf_cli import __version__
from uqf_cli.cli import (
    demo,
    embed_text,
    evaluate,
    fuse,
    inspect_sids,
    prepare,
    quantize,
    recommend,
    train_gcn,
    train_rec,
)
from uqf_cli.cli.common import StdoutClosed, end_quietly_when_stdout_closes, install_signal_handlers, set_debug

app = typer.Typer(
    name="uqf",
    help="Semantic IDs for generative recommendation: text + collaborative signals fused by the "
    "Unified Q-Former, quantized into hierarchical IDs, learned by TIGER or LC-Rec style models.",
    no_args_is_help=True,
    add_completion=True,
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


app.command("prepare")(prepare.prepare)
app.command("embed-text")(embed_text.embed_text)
app.command("train-gcn")(train_gcn.train_gcn)
app.command("fuse")(fuse.fuse)
app.command("quantize")(quantize.quantize)
app.command("inspect-sids")(inspect_sids.inspect_sids)
app.command("train-rec")(train_rec.train_rec)
app.command("evaluate")(evaluate.evaluate)
app.command("recommend")(recommend.recommend)
app.command("demo")(demo.demo)


def _show_flags_as_flags() -> None:
    """Help lists a flag (``--force``) without a value type: it takes no value. Typer's rich help
    prints ``<bool>`` beside flags, so the type column is left empty for them."""
    from typer.core import TyperOption

    value_type = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return "" if self.is_flag and not self.count else value_type(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_show_flags_as_flags()


def _plain_usage_arguments() -> None:
    """Usage lines name arguments as Click and most CLIs do, ``uqf evaluate [OPTIONS] MODEL_DIR DATASET``:
    Typer >= 0.2x writes a required one as ``{model_dir}``, which reads like a literal or a template."""
    from typer.core import TyperArgument

    if not hasattr(TyperArgument, "_usage_display_name"):  # older Typer: Click's usage line already is
        return

    def usage_name(self: TyperArgument) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_plain_usage_arguments()


def main() -> None:
    """Console-script entry point; ``--debug`` is accepted anywhere on the command line."""
    sys.exit(run(sys.argv[1:]))


def run(args: list[str]) -> int:
    """Run ``uqf ARGS`` and return the exit code.

    Click's own errors (an option value that is not a number, an unknown option, a missing
    argument) become one line on stderr naming the command, exit code 2, as our own errors do:
    a shell script's log should not fill with a usage block and a framed panel per failure.
    """
    if "--debug" in args[1:]:
        args = ["--debug", *[a for a in args if a != "--debug"]]
    install_signal_handlers()
    end_quietly_when_stdout_closes()
    try:
        rv = app(args=args, prog_name="uqf", standalone_mode=False)
    except _CLI_ERRORS as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # a bare `uqf SUBCOMMAND` prints that command's help, as Click does
            return 2
        print(one_line_cli_error(e), file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    except _ABORTS:
        print("uqf: interrupted", file=sys.stderr)
        return 130
    except StdoutClosed:  # `uqf ... | head`: ends quietly, and `set -o pipefail` scripts go on
        return 0
    return rv if isinstance(rv, int) else 0


def _parser_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage/parameter errors, aborts) of the Click that Typer runs on.

    Typer >= 0.2x vendors its own Click (errors derive from ``typer.TyperException``); older
    Typer uses the ``click`` package. Both are covered so the one-line rule holds on either.
    """
    errors: list[type[BaseException]] = []
    aborts: list[type[BaseException]] = [typer.Abort]
    if hasattr(typer, "TyperException"):
        errors.append(typer.TyperException)
    try:
        import click
    except ImportError:
        pass
    else:
        errors.append(click.ClickException)
        aborts.append(click.exceptions.Abort)
    return tuple(errors), tuple(aborts)


_CLI_ERRORS, _ABORTS = _parser_error_types()


def one_line_cli_error(e: BaseException) -> str:
    """``uqf quantize: Invalid value for '--levels': ... (see uqf quantize --help)``."""
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "uqf"
    message = " ".join(str(getattr(e, "format_message", e.__str__)()).split())
    hint = f" (see {where} --help)" if ctx is not None else ""
    return f"{where}: {message}{hint}"
