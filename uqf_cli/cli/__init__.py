"""The ``uqf`` command line: the Typer app (:mod:`.app`), shared options (:mod:`.options`), error
handling (:mod:`.common`) and one module per subcommand."""

from uqf_cli.cli.app import app, main, one_line_cli_error, run

__all__ = ["app", "main", "one_line_cli_error", "run"]
