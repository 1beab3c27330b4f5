"""uqf: semantic IDs for generative recommendation with the Unified Q-Former.

Every stage is a plain importable module (``uqf_cli.prepare``, ``uqf_cli.embed_text``, ...);
the Typer app in ``uqf_cli.cli`` is a thin layer over them. File formats live in ``uqf_cli.io``.
"""

__version__ = "0.1.0"
