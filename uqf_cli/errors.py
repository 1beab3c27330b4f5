# transitional: removed at merge
"""Alias of :mod:`uqf_cli.core.errors` for imports not yet rewritten."""

import sys

import uqf_cli.core.errors as _new

sys.modules[__name__] = _new
