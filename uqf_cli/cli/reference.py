"""The options reference (docs/options.md), generated from the Typer app.

Why: every option is declared once (an ``opt()`` field, a shared run option or a registry entry's
options); the flags come from those declarations, so the reference table comes from the built app
too and cannot drift. ``tests/test_options_reference.py`` checks the committed file is current.

    .venv/bin/python -m uqf_cli.cli.reference > docs/options.md
"""

from __future__ import annotations

from typing import Any

import click
import typer

HEADER = """# Options reference

Generated from the `uqf` app by `python -m uqf_cli.cli.reference > docs/options.md` (do not edit by hand;
`tests/test_options_reference.py` fails when it is stale). Each option is declared once, in its stage's
config (an `opt()` field), in the shared run options, or by a registered method or backbone.
"""


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(p: Any) -> str:
    if getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None):
        return "off" if not p.default else "on"
    if p.default is None or callable(p.default):
        return ""
    return f"`{_cell(str(p.default))}`"


def _flags(p: Any) -> str:
    names = [*p.opts, *getattr(p, "secondary_opts", [])]
    return ", ".join(f"`{n}`" for n in names)


def command_table(name: str, command: Any) -> list[str]:
    """The markdown section of one command: its first help line and one row per option."""
    lines = [f"## `uqf {name}`", "", _cell((command.help or "").strip().split("\n\n")[0]), "",
             "| option | default | meaning |", "|---|---|---|"]
    for p in command.params:
        if p.param_type_name == "option" and not getattr(p, "hidden", False):
            lines.append(f"| {_flags(p)} | {_default(p)} | {_cell(p.help or '')} |")
    return [*lines, ""]


def options_reference(app: typer.Typer) -> str:
    """docs/options.md for ``app``: one section per command, in the order ``uqf --help`` lists them."""
    group = typer.main.get_command(app)
    ctx = click.Context(group)
    lines = [HEADER]
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        lines.extend(command_table(name, group.get_command(ctx, name)))  # type: ignore[attr-defined]
    return "\n".join(lines)


def main() -> None:
    from uqf_cli.cli.app import app

    print(options_reference(app), end="")


if __name__ == "__main__":
    main()
