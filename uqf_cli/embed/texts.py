"""The text ``uqf embed-text`` embeds for an item: chosen fields as ``name: value`` pieces, or a template.

Empty fields are left out of the pieces; a template's missing fields become empty strings; lists are
joined with spaces. Unknown field names are an error rather than silently empty texts.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import Dataset


def field_text(value: Any) -> str:
    """A field value as one line of text (lists joined with spaces, None -> '')."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(t for t in (field_text(v) for v in value) if t)
    return " ".join(str(value).split())


def template_fields(template: str) -> list[str]:
    """The field names a ``str.format`` template refers to; rejects positional or odd placeholders."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise OptionError("--template", f"not a valid template ({e})") from e
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise OptionError("--template", f"placeholder {{{name}}} must be a field name such as {{title}}")
        names.append(name)
    if not names:
        raise OptionError("--template", "names no field (write e.g. '{title} | {brand}')")
    return names


def item_text(fields: dict[str, Any], field_names: Sequence[str], template: str | None) -> str:
    """The text of one item: the template filled in, or ``name: value`` pieces joined with '; '."""
    if template:
        values = {name: field_text(fields.get(name)) for name in template_fields(template)}
        return " ".join(template.format(**values).split())
    pieces = [f"{name}: {field_text(fields.get(name))}" for name in field_names if field_text(fields.get(name))]
    return "; ".join(pieces)


def build_texts(ds: Dataset, field_names: Sequence[str], template: str | None) -> list[str]:
    """Item texts in ``items.jsonl`` order. Unknown field names are an error (a typo would otherwise
    silently embed empty strings)."""
    wanted = template_fields(template) if template else list(field_names)
    if not wanted:
        raise OptionError("--fields", "no field given")
    present = {k for f in ds.items.values() for k in f}
    missing = [n for n in wanted if n not in present]
    if missing:
        known = ", ".join(sorted(present)) or "none"
        opt = "--template" if template else "--fields"
        raise OptionError(opt, f"no item has field(s) {', '.join(missing)} (fields in this dataset: {known})")
    return [item_text(ds.items[iid], wanted, template) for iid in ds.item_ids]
