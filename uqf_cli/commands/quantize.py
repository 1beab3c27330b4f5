"""Old home of ``uqf quantize``; see :mod:`uqf_cli.cli.quantize`."""
# transitional: removed at merge

from uqf_cli.cli.quantize import *  # noqa: F403
from uqf_cli.cli.quantize import DEFAULT_EPS, DEFAULT_LEVELS, LETTER_DEFAULTS, register

__all__ = ["DEFAULT_EPS", "DEFAULT_LEVELS", "LETTER_DEFAULTS", "register"]
