# transitional: removed at merge
"""Alias of :mod:`uqf_cli.core.checkpoint` for imports not yet rewritten."""

import sys

import uqf_cli.core.checkpoint as _new

sys.modules[__name__] = _new
