"""Old home of the subcommands; see :mod:`uqf_cli.cli`."""
# transitional: removed at merge
