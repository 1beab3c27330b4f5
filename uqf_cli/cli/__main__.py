"""``python -m uqf_cli.cli`` runs the CLI."""

from uqf_cli.cli import main

main()
