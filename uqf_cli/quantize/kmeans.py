"""k-means (k-means++ seeding, Lloyd iterations), deterministic given a generator."""

from __future__ import annotations

import torch


def sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [N, K] (clamped at 0 against rounding)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None, :]).clamp_min_(0)


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [x[first]]
    d2 = sq_dist(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: pick remaining centres uniformly
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial((d2 / total).cpu(), 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, sq_dist(x, x[idx : idx + 1]).squeeze(1))
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k-means++ seeds; empty clusters take the point farthest from its centre.

    Returns ``(centres [k, d], assignment [N])``. Deterministic given ``gen`` on CPU.
    """
    x = x.detach()
    centres = kmeans_plus_plus(x, k, gen)
    assign = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for it in range(max(1, iters)):
        d = sq_dist(x, centres)
        new_assign = d.argmin(1)
        if it > 0 and torch.equal(new_assign, assign):
            break
        assign = new_assign
        centres, counts = member_means(x, assign, centres)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = d.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)[: len(empty)]
            centres[empty] = x[far]
    return centres, sq_dist(x, centres).argmin(1)


def member_means(x: torch.Tensor, assign: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each centre to the mean of its members (an empty cluster keeps its centre); also the counts."""
    counts = torch.bincount(assign, minlength=centres.shape[0])
    sums = torch.zeros_like(centres).index_add_(0, assign, x)
    return torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres), counts
