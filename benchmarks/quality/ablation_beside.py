"""Another run's records beside this one's (``ablation.py --beside DIR``): same tokenizer and seed, another backbone.

A record of ``DIR/units/`` sits beside this run's record of the same unit (tokenizer and seed) only when both were
made on the same SIDs: the same data, tokenization settings and test users, and the same SIDs file (its
``sids_sha256``; where either record was made before the digest existed: the same tokenization statistics, compared
exactly). Any other record is refused with one line saying why, never added. The same data and test users also
mean the same test cases in the same order, so the per-user scores of two such records pair user by user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.quality.ablation_units import read_json

# Tokenization statistics that two records of the same SIDs share exactly (computed from the SIDs and the seed).
STATISTICS = ("items", "raw_collision_rate", "collision_rate", "utilisation", "semantic_lift", "collab_cosine_lift",
              "cooc_share", "cooc_lift", "items_per_prefix")
# The unit settings that decide the SIDs and the test users (the training settings may differ: that is the point).
SAME_SETTINGS = ("data", "tokenization", "eval_users")


@dataclass
class Beside:
    """The accepted pairs (this run's record, the other run's record) per variant, and the refusals."""

    folder: Path
    source: str  # the other run's table, e.g. "office_converged.md"
    backbone: str = "another backbone"  # of the other run's records read
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    commands: set[str] = field(default_factory=set)  # of the other run's records read (taken or refused)
    codes: set[str] = field(default_factory=set)
    looked: int = 0  # this run's SID records looked up there

    def records(self, variant: str) -> list[dict[str, Any]]:
        return [theirs for _, theirs in self.pairs.get(variant, [])]


def backbone_name(rec: dict[str, Any]) -> str:
    """The backbone of a SID record: LC-Rec records say so; TIGER's carry TIGER settings."""
    return "LC-Rec" if rec.get("backbone") == "lcrec" or "lcrec" in (rec.get("settings") or {}) else "TIGER"


def canonical(value: Any, limit: int = 80) -> str:
    """JSON text of a value: floats exactly (``repr``), NaN equal to NaN, dict keys sorted; cut after ``limit``
    characters (a refusal stays one readable line; equality is decided on the whole text)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def first_difference(a: Any, b: Any, path: str) -> str | None:
    """``path: a vs b`` at the first place two JSON values differ (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}"
            if key not in a or key not in b:
                shown = [canonical(side[key]) if key in side else "missing" for side in (a, b)]
                return f"{where}: {shown[0]} vs {shown[1]}"
            diff = first_difference(a[key], b[key], where)
            if diff:
                return diff
        return None
    whole = [json.dumps(v, sort_keys=True, default=str) for v in (a, b)]
    return None if whole[0] == whole[1] else f"{path}: {canonical(a)} vs {canonical(b)}"


def same_sids(mine: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """None when two SID records were made on the same SIDs and test users, else the first reason they were not."""
    for key in SAME_SETTINGS:
        diff = first_difference((mine.get("settings") or {}).get(key), (theirs.get("settings") or {}).get(key),
                                f"settings.{key}")
        if diff:
            return diff
    a, b = mine.get("tokenization") or {}, theirs.get("tokenization") or {}
    if a.get("sids_sha256") and b.get("sids_sha256"):
        return first_difference(a["sids_sha256"], b["sids_sha256"], "tokenization.sids_sha256 (the SIDs files)")
    if not any(key in a and key in b for key in STATISTICS):
        return "tokenization: neither a sids_sha256 on both records nor tokenization statistics to compare"
    for key in STATISTICS:
        diff = first_difference(a.get(key), b.get(key), f"tokenization.{key}")
        if diff:
            return diff
    return None


def match(folder: Path, records: list[dict[str, Any]]) -> Beside:
    """This run's SID records paired, unit by unit, with ``folder/units/``'s records of the same SIDs."""
    folder = Path(folder)
    out = Beside(folder=folder, source=folder.name + ".md")
    for mine in sorted((r for r in records if r.get("kind") == "sid"), key=lambda r: (r["variant"], r["seed"])):
        out.looked += 1
        theirs = read_json(folder / "units" / f"{mine['unit']}.json")
        if theirs is None:
            continue
        out.backbone = backbone_name(theirs)
        out.commands.update([theirs["command"]] if theirs.get("command") else [])
        out.codes.update([theirs["code"]] if theirs.get("code") else [])
        why = "" if theirs.get("kind") == "sid" else "not a SID unit"
        why = why or same_sids(mine, theirs) or ""
        if why:
            out.refused.append(f"{mine['unit']} of {out.source} refused, not the same SIDs: {why}")
        else:
            out.pairs.setdefault(mine["variant"], []).append((mine, theirs))
    return out
