"""One module per subcommand. Each defines ``register(app)``; ``uqf_cli.cli`` discovers them.

Why discovery: stages are added independently, and the CLI stays a thin, order-preserving list.
"""
