# transitional: removed at merge
"""Alias of :mod:`uqf_cli.data.prepare.recbole_benchmark` for imports not yet rewritten."""

import sys

import uqf_cli.data.prepare.recbole_benchmark as _new

sys.modules[__name__] = _new
