# transitional: removed at merge
"""Alias of :mod:`uqf_cli.data.dataset` for imports not yet rewritten."""

import sys

import uqf_cli.data.dataset as _new

sys.modules[__name__] = _new
