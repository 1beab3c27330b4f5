# transitional: removed at merge
"""Alias of :mod:`uqf_cli.files` for imports not yet rewritten."""

import sys

import uqf_cli.files as _new

sys.modules[__name__] = _new
