"""uqf: semantic IDs for generative recommendation with the Unified Q-Former.

Every stage is a plain importable module (``uqf_cli.data.prepare``, ``uqf_cli.embed``, ...);
the Typer app in ``uqf_cli.cli`` is a thin layer over them. File formats live in ``uqf_cli.files``.
"""

__version__ = "0.1.0"
