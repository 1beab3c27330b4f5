"""``python -m uqf_cli`` runs the CLI."""

from uqf_cli.cli import main

main()
