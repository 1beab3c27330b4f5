# transitional: removed at merge
"""Alias of :mod:`uqf_cli.core.runtime` for imports not yet rewritten."""

import sys

import uqf_cli.core.runtime as _new

sys.modules[__name__] = _new
