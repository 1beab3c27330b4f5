"""Options shared by several subcommands, defined once (type, flag names, help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines (errors still print).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are deterministic on CPU).")]
Device = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (auto picks CUDA when present).")
]
OutFile = Annotated[Path, typer.Option("--output", "-o", help="Output file.", dir_okay=False)]
OutDir = Annotated[Path, typer.Option("--output", "-o", help="Output directory.", file_okay=False)]
PlotOut = Annotated[
    Path | None,
    typer.Option("--plot", help="Also draw a picture here (.png, .svg or .pdf; needs the 'plot' extra).",
                 dir_okay=False),
]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue an interrupted run from its checkpoint <output>.ckpt.st "
                 "(same options and inputs; see docs/robustness.md)."),
]
