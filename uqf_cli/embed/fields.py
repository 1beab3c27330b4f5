"""Which item fields ``uqf embed-text`` embeds when ``--fields`` is not given.

The default fields are title, brand, categories and description, the ones Amazon-derived datasets
carry. Those that some item has are used, in that order. A dataset with none of them (e.g. items
with only a ``name``, or RecBole benchmark files whose text is one ``text`` field) falls back to
every field that holds a string in at least one item, in order of first appearance in
``items.jsonl`` (the first item's fields in their order, then any new field of the next items).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from uqf_cli.core.errors import OptionError

DEFAULT_FIELDS = ("title", "brand", "categories", "description")


@dataclass(frozen=True)
class FieldChoice:
    """The fields to embed and how they were chosen (recorded in provenance)."""

    fields: tuple[str, ...]
    source: str  # "option" | "default" | "default fields present" | "all string fields"
    note: str | None = None  # a line for stderr when the choice is not the plain default


def _is_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, (list, tuple)) and any(_is_text(v) for v in value)


def string_fields(items: Iterable[dict[str, Any]]) -> list[str]:
    """Fields holding text in at least one item, in order of the field's first appearance."""
    has_text: dict[str, bool] = {}
    for fields in items:
        for name, value in fields.items():
            has_text[name] = has_text.get(name, False) or _is_text(value)
    return [name for name, text in has_text.items() if text]


def choose_fields(items: dict[str, dict[str, Any]], fields: Sequence[str] | None) -> FieldChoice:
    """``fields`` as given, else the default fields present, else every string field."""
    if fields is not None:
        return FieldChoice(tuple(fields), "option")
    present = {k for f in items.values() for k in f}
    defaults = tuple(n for n in DEFAULT_FIELDS if n in present)
    if defaults == DEFAULT_FIELDS:
        return FieldChoice(defaults, "default")
    if defaults:
        absent = ", ".join(n for n in DEFAULT_FIELDS if n not in defaults)
        return FieldChoice(defaults, "default fields present",
                           f"embedding fields {', '.join(defaults)} (no item has {absent})")
    found = string_fields(items.values())
    if not found:
        known = ", ".join(sorted(present)) or "none"
        raise OptionError("--fields", f"no item has a text field (fields in this dataset: {known})")
    return FieldChoice(tuple(found), "all string fields",
                       f"no default text field ({', '.join(DEFAULT_FIELDS)}); embedding every string field: "
                       f"{', '.join(found)}")
