"""The command a result records: ``[VAR=value ...] python -m benchmarks.<group>.<name> ARGS``, shell-quoted.

Repository-relative whatever the cwd or interpreter path the script ran with (``sys.argv[0]`` under
``python -m`` is the file's absolute path), so a committed result names no machine's folders.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence


def command_line(module: str, argv: Sequence[str], env: Sequence[str] = ()) -> str:
    """``module``'s command with ``argv`` (the arguments after the script name), prefixed by the ``env`` variables."""
    prefix = [f"{name}={os.environ.get(name, '')}" for name in env]
    return " ".join(shlex.quote(a) for a in [*prefix, "python", "-m", module, *argv])
