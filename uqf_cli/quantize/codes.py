"""Code every item, measure the codes (utilisation, perplexity, collisions) and make SIDs unique."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from uqf_cli.core.errors import OptionError
from uqf_cli.files.sids import depth_label
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.interface import Coder, Encoded
from uqf_cli.quantize.kmeans import sq_dist
from uqf_cli.quantize.sinkhorn import sinkhorn_assign


def level_stats(codes: np.ndarray, codebook_sizes: list[int]) -> list[dict[str, float]]:
    """Per level: codes used, utilisation (used / K) and perplexity (exp of usage entropy)."""
    out = []
    for level, k in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, level], minlength=k).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        out.append({"level": level + 1, "codebook_size": int(k), "used": int((counts > 0).sum()),
                    "utilisation": float((counts > 0).sum() / k), "perplexity": float(np.exp(-(p * np.log(p)).sum()))})
    return out


def collision_groups(codes: np.ndarray) -> dict[tuple[int, ...], list[int]]:
    """Full SID -> rows, only for SIDs held by more than one item (rows in ascending order)."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for row, sid in enumerate(map(tuple, codes.tolist())):
        groups[sid].append(row)
    return {sid: rows for sid, rows in groups.items() if len(rows) > 1}


def collision_rate(codes: np.ndarray) -> float:
    """Share of items whose full SID is shared with at least one other item."""
    return sum(len(r) for r in collision_groups(codes).values()) / max(1, len(codes))


def dedup_by_level(codes: np.ndarray, existing: np.ndarray | None = None) -> np.ndarray:
    """Append a level numbering items within each raw-SID group (0 for the first/unique ones).

    ``existing`` (final SIDs of items coded earlier, with their extra level) lets ``--apply`` give
    new items the next free number in their group.
    """
    taken: dict[tuple[int, ...], set[int]] = defaultdict(set)
    if existing is not None:
        for row in existing.tolist():
            taken[tuple(row[:-1])].add(row[-1])
    extra = np.zeros(len(codes), dtype=np.int64)
    for row, sid in enumerate(map(tuple, codes.tolist())):
        k = 0
        while k in taken[sid]:
            k += 1
        taken[sid].add(k)
        extra[row] = k
    return np.concatenate([codes, extra[:, None]], axis=1)


def dedup_by_sinkhorn(codes: np.ndarray, last_residuals: torch.Tensor, last_book: torch.Tensor,
                      cfg: QuantizeConfig, reserved: set[tuple[int, ...]] | None = None) -> tuple[np.ndarray, int]:
    """Re-assign the last code of colliding items until every SID is unique (LC-Rec style).

    Round: items in collision groups get a balanced (Sinkhorn) assignment of the last level among
    themselves. After ``cfg.max_dedup_rounds`` the remaining duplicates take, in row order, the
    nearest last-level code whose full SID is free. ``reserved`` SIDs (items coded earlier) count
    as taken. Returns ``(codes, rounds used)``.
    """
    dist = sq_dist(last_residuals.detach().double(), last_book.detach().double()).cpu()
    return dedup_by_distances(codes, dist, cfg, reserved)


def dedup_by_distances(codes: np.ndarray, dist: torch.Tensor, cfg: QuantizeConfig,
                       reserved: set[tuple[int, ...]] | None = None) -> tuple[np.ndarray, int]:
    """:func:`dedup_by_sinkhorn` given each item's distances [N, K] to the last level's codes."""
    codes = codes.copy()
    reserved = reserved or set()
    eps = cfg.sinkhorn_eps or 0.003
    rounds = 0
    for rounds in range(1, cfg.max_dedup_rounds + 1):
        rows = _colliding_rows(codes, reserved)
        if not rows:
            return codes, rounds - 1
        if len(rows) == 1:
            break
        codes[rows, -1] = sinkhorn_assign(dist[rows], eps, cfg.sinkhorn_iters).numpy()
    taken = set(reserved)
    for row in range(len(codes)):  # row order: within a group the first row keeps its code
        sid = tuple(codes[row].tolist())
        if sid not in taken:
            taken.add(sid)
            continue
        prefix = sid[:-1]
        for code in dist[row].argsort().tolist():
            if (*prefix, code) not in taken:
                codes[row, -1] = code
                taken.add((*prefix, code))
                break
        else:
            raise OptionError("--dedup", f"more than {dist.shape[1]} items share the prefix {list(prefix)}; "
                              "use --dedup level or a larger last codebook")
    return codes, rounds


def finalise_codes(coder: Coder, emb: torch.Tensor, cfg: QuantizeConfig) -> tuple[
        np.ndarray, np.ndarray, dict[str, Any]]:
    """Encode, measure, deduplicate: ``(raw codes, final codes, stats)``."""
    encoded = coder.code(emb, cfg.batch_size)
    raw, errors = encoded.codes, encoded.errors
    groups = collision_groups(raw)
    stats: dict[str, Any] = {"items": len(raw), "method": cfg.method, "levels": cfg.levels,
                             "per_level": level_stats(raw, cfg.codebook_sizes),
                             "raw_collision_rate": collision_rate(raw),
                             "raw_collision_groups": len(groups),
                             "max_items_per_sid": max([len(g) for g in groups.values()] or [1]),
                             **errors, "dedup": cfg.dedup}
    if stats["raw_collision_groups"] == 0:
        final = raw
    elif cfg.dedup == "level":
        final = dedup_by_level(raw)
    else:
        final, rounds = dedup_by_distances(raw, last_distances(encoded, cfg.method), cfg)
        stats["dedup_rounds"] = rounds
        stats["dedup_changed_items"] = int((final != raw).any(1).sum())
    stats["final_levels"] = int(final.shape[1])
    stats["depth"] = depth_label(cfg.levels, final.shape[1] > cfg.levels)
    stats["final_collision_rate"] = collision_rate(final)
    return raw, final, stats


def last_distances(encoded: Encoded, method: str) -> torch.Tensor:
    """The distances ``--dedup sinkhorn`` re-assigns by (refused for a method that offers none)."""
    if encoded.last_distances is None:
        raise OptionError("--dedup", f"--method {method} offers no code distances to re-assign by; use --dedup level")
    return encoded.last_distances()


def _colliding_rows(codes: np.ndarray, reserved: set[tuple[int, ...]]) -> list[int]:
    rows = sorted(r for group in collision_groups(codes).values() for r in group)
    rows += [r for r, sid in enumerate(map(tuple, codes.tolist())) if sid in reserved]
    return sorted(set(rows))
