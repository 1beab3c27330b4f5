"""``uqf prepare``: turn a public recommendation dataset into a uqf dataset directory (docs/prepare.md).

:mod:`.readers` (one per format: :mod:`.recbole`, :mod:`.recbole_benchmark`, LC-Rec, Amazon dumps, built-in),
:mod:`.cleaning` (text, then interactions), :mod:`.config` (the options), :mod:`.stage` (the whole stage).
"""

import sys
from types import ModuleType
from typing import Any

from uqf_cli.data.prepare.cleaning import (
    chronological_sequences,
    clean_fields,
    clean_interactions,
    clean_text,
    deduplicate,
    join_categories,
    kcore,
)
from uqf_cli.data.prepare.config import PrepareConfig
from uqf_cli.data.prepare.raw import Interaction, RawDataset
from uqf_cli.data.prepare.readers import BUILTIN_PREFIX, BUILTINS, READERS, detect_format, read_builtin, read_source
from uqf_cli.data.prepare.stage import FORMAT_DEFAULTS, SPLIT_PROTOCOL, prepare

__all__ = [
    "BUILTINS",
    "BUILTIN_PREFIX",
    "FORMAT_DEFAULTS",
    "READERS",
    "SPLIT_PROTOCOL",
    "Interaction",
    "PrepareConfig",
    "RawDataset",
    "chronological_sequences",
    "clean_fields",
    "clean_interactions",
    "clean_text",
    "deduplicate",
    "detect_format",
    "join_categories",
    "kcore",
    "prepare",
    "read_builtin",
    "read_source",
]


class _CallablePackage(ModuleType):
    """This package, callable: ``uqf_cli.data.prepare(source, output, ...)`` is :func:`prepare`, while
    ``uqf_cli.data.prepare.kcore`` and ``import uqf_cli.data.prepare.readers`` keep working as for any package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return prepare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
