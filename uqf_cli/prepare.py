# transitional: removed at merge
"""Alias of :mod:`uqf_cli.data.prepare` for imports not yet rewritten."""

import sys

import uqf_cli.data.prepare as _new

sys.modules[__name__] = _new
