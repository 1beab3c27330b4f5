"""Balanced assignment (Sinkhorn-Knopp) as per-code biases, and balanced k-means (docs/quantize.md)."""

from __future__ import annotations

import math

import torch

from uqf_cli.quantize.kmeans import kmeans, member_means, sq_dist


def sinkhorn_code_bias(dist: torch.Tensor, eps: float, iters: int = 50) -> torch.Tensor:
    """Per-code bias ``b`` [K] such that ``argmin_k (dist - b)`` is the balanced (Sinkhorn) assignment.

    ``dist`` [N, K] is min-max normalised, then ``log Q = -dist / eps`` is alternately normalised over
    items and over codes, in log space; ``b = eps * span * g`` from the code potential ``g`` (the item
    potential cannot change an item's choice; derivation in docs/quantize.md).
    """
    d = dist.double()
    lo = d.min()
    span = (d.max() - lo).clamp_min(1e-12)
    log_q = -(d - lo) / span / eps
    n, k = d.shape
    g = torch.zeros(k, dtype=torch.float64, device=d.device)
    for _ in range(iters):
        col = torch.logsumexp(log_q, dim=0) + math.log(k)
        log_q = log_q - col
        g = g - col
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)
    bias = eps * span * g
    return (bias - bias.max()).to(dist.dtype)  # shift-invariant; max 0 keeps numbers small


def sinkhorn_assign(dist: torch.Tensor, eps: float, iters: int = 50) -> torch.Tensor:
    """Balanced assignment of N items to K codes (see :func:`sinkhorn_code_bias`)."""
    return (dist - sinkhorn_code_bias(dist, eps, iters)).argmin(1)


def balanced_kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator, eps: float,
                    sinkhorn_iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means whose assignment step is the balanced (Sinkhorn) one, started from plain k-means.

    Balancing spreads items away from "hub" codes near the origin; moving the centres to their balanced
    members keeps the reconstruction error low.
    """
    centres, assign = kmeans(x, k, iters, gen)
    for it in range(max(1, iters)):
        new_assign = sinkhorn_assign(sq_dist(x, centres), eps, sinkhorn_iters)
        if it > 0 and torch.equal(new_assign, assign):
            break
        assign = new_assign
        centres, _ = member_means(x, assign, centres)
    return centres, sinkhorn_assign(sq_dist(x, centres), eps, sinkhorn_iters)
