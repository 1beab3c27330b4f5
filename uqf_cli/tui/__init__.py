"""Terminal user interfaces (the optional ``tui`` extra, Textual): ``uqf inspect-sids --tui``.

Textual is imported only when an interface is started, so the CLI and the library work without it.
"""

from __future__ import annotations

import importlib

from uqf_cli.core.errors import OptionError

EXTRA_HINT = "pip install 'uqf-cli[tui]'"


def require_textual(option: str = "--tui") -> None:
    """Fail with one line naming the extra to install when Textual is missing."""
    try:
        importlib.import_module("textual")
    except ImportError:
        raise OptionError(option, f"needs textual, the optional 'tui' extra: {EXTRA_HINT}") from None
