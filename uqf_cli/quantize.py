"""``uqf quantize``: turn item embeddings into hierarchical semantic IDs (SIDs).

Two quantizers share one residual structure. Level ``l`` holds a codebook ``C_l`` of ``K_l``
vectors; an item's latent ``z`` is coded greedily, level by level, on the residual left by the
levels above it::

    r_0 = z,   c_l = argmin_k ||r_l - C_l[k]||^2,   r_{l+1} = r_l - C_l[c_l]

so the first code says "roughly where", each further code refines it, and items that share a
prefix are close in latent space. That prefix structure is what a generative recommender exploits.

* ``rqvae`` (TIGER, LC-Rec): ``z = encoder(x)`` is an MLP, ``x_hat = decoder(sum_l C_l[c_l])``.
  Loss (VQ-VAE, van den Oord et al.)::

      L = ||x - x_hat||^2 + sum_l ( ||sg(r_l) - C_l[c_l]||^2 + beta * ||r_l - sg(C_l[c_l])||^2 )

  with ``beta = 0.25`` (commitment) and straight-through gradients (the decoder sees
  ``z + sg(z_q - z)``, so the encoder gets the decoder's gradient as if quantization were the
  identity). Why it converges in seconds rather than LC-Rec's 10k epochs: (1) the autoencoder is
  warmed up without quantization for a few dozen steps, (2) every codebook is then initialised by
  k-means (k-means++ seeding) on *that level's* residuals, so training starts from a good
  quantizer instead of random codes, (3) full-batch AdamW on small catalogues (mini-batches of
  ``batch_size`` on larger fitting samples), and (4) dead codes (unused for a whole
  re-initialisation window) are re-seeded on residuals of items from the most crowded codes,
  which keeps utilisation high.
* ``rqkmeans`` (GRID, OneRec, MiniOneRec): no training; the latent is the (centred, scaled)
  input and each level's codebook is k-means on the previous level's residuals.

Inputs are centred and divided by one global scale (their RMS norm) before anything else, so the
same learning rate and k-means tolerances work for text, collaborative and fused embeddings; the
transform is stored with the model so ``--apply`` codes new items identically.

Balanced levels (``sinkhorn_eps``, ``sinkhorn_levels``; LC-Rec balances the last level, OneRec
uses balanced k-means): with a codebook shared by all prefixes, a few codes near the origin attract
most small residuals ("hub" codes), so items of one level-1 cell pile onto the same level-2/3 codes
(on Office text, 65% of items shared their first two codes with plain residual k-means). On a
balanced level the assignment is the argmax of an entropic optimal-transport plan with uniform
marginals over codes (Sinkhorn-Knopp on min-max normalised distances). That plan has the form
``log Q_ik = -d_ik / T + f_i + g_k``; the item term cannot change an item's choice, so the
assignment is ``argmin_k d_ik - b_k`` with one stored bias per code. Biases are fitted once, level
by level, on the fitted items, saved with the model, and used for every item, so ``--apply`` gives
a new item exactly the code the fitted items' assignment rule gives it (no batch needed). On
balanced levels the k-means initialisation is balanced too (Lloyd steps with the balanced
assignment), which keeps the reconstruction error low. Default: every level but the first
(``rest``) with ``eps = 0.001``; level 1 follows the data density because its cells are the
semantic groups (balancing it lowered the text-cosine lift at depth 1 from 0.59 to 0.54).

Large inputs: normalisation statistics use every item (in chunks); k-means, training and the
balancing biases use a seeded sample of at most ``fit_sample`` items (8,192 by default); every
item is then coded in chunks of ``batch_size`` rows, so memory beyond the input matrix is bounded.

Collisions: the *raw collision rate* is the share of items whose full SID is shared with at least
one other item. Final SIDs are always made unique:

* ``dedup="level"`` (TIGER, GRID): when collisions exist, an extra level is appended whose code is
  the item's index inside its collision group (0 for items with a unique SID).
* ``dedup="sinkhorn"`` (LC-Rec): the last code of colliding items is re-assigned with a balanced
  (Sinkhorn) assignment among the colliding items, repeated until unique; the few left after
  ``max_dedup_rounds`` take the nearest last-level code that makes them unique (deterministic).

Statistics (recorded in the SIDs header and shown on screen): per-level utilisation (share of the
codebook used), perplexity (``exp`` of the entropy of code usage; equals ``K`` for perfectly even
usage), raw collision rate and reconstruction error (mean squared error of the reconstruction in
input units, and relative to the mean squared norm of the centred input).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uqf_cli import io, runtime
from uqf_cli.checkpoint import Checkpointer, Snapshot
from uqf_cli.errors import InputError, OptionError
from uqf_cli.quantize_letter import LetterConfig, LetterRegulariser, build_regulariser

METHODS = ("rqvae", "rqkmeans")
DEDUP_MODES = ("level", "sinkhorn")
QUANTIZER_KIND = "quantizer"

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class QuantizeConfig:
    """Every knob of a quantization run (recorded in provenance and in the model file)."""

    method: str = "rqvae"
    levels: int = 3
    codebook_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    code_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    epochs: int = 100
    warmup_epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    beta: float = 0.25
    batch_size: int = 8192
    kmeans_iters: int = 50
    reinit_every: int = 25
    sinkhorn_eps: float | None = 0.001
    sinkhorn_iters: int = 50
    sinkhorn_levels: str = "rest"
    fit_sample: int = 8192
    dedup: str = "level"
    max_dedup_rounds: int = 20
    seed: int = 0

    def validate(self, n_items: int | None = None) -> None:
        """Reject impossible settings with an error that names the option."""
        if self.method not in METHODS:
            raise OptionError("--method", f"unknown method {self.method!r} (use {' or '.join(METHODS)})")
        if self.dedup not in DEDUP_MODES:
            raise OptionError("--dedup", f"unknown mode {self.dedup!r} (use {' or '.join(DEDUP_MODES)})")
        if self.levels < 1 or self.levels > 8:
            raise OptionError("--levels", "must be between 1 and 8")
        if len(self.codebook_sizes) != self.levels:
            raise OptionError("--codebook-size", f"{len(self.codebook_sizes)} sizes given for {self.levels} levels")
        if any(k < 2 for k in self.codebook_sizes):
            raise OptionError("--codebook-size", "every codebook needs at least 2 codes")
        if self.code_dim < 1:
            raise OptionError("--code-dim", "must be positive")
        if any(h < 1 for h in self.hidden):
            raise OptionError("--hidden", "layer sizes must be positive")
        if self.epochs < 0 or self.warmup_epochs < 0:
            raise OptionError("--epochs", "must not be negative")
        if self.sinkhorn_eps is not None and self.sinkhorn_eps <= 0:
            raise OptionError("--sinkhorn-eps", "must be positive")
        if self.sinkhorn_iters < 1:
            raise OptionError("--sinkhorn-iters", "must be positive")
        parse_sinkhorn_levels(self.sinkhorn_levels, self.levels)
        if self.fit_sample < 2:
            raise OptionError("--fit-sample", "must be at least 2")
        if n_items is not None and max(self.codebook_sizes) > n_items:
            raise OptionError(
                "--codebook-size",
                f"codebook of {max(self.codebook_sizes)} codes is larger than the {n_items} items; "
                f"try --codebook-size {suggest_codebook_size(n_items)}",
            )


def suggest_codebook_size(n_items: int) -> int:
    """A power of two leaving about eight items per level-1 code (at least 2)."""
    return max(2, 1 << max(1, math.floor(math.log2(max(2, n_items / 8)))))


def parse_sinkhorn_levels(value: str, levels: int) -> list[int]:
    """0-based balanced levels: ``"rest"`` -> all but the first, ``"last"``, ``"all"``, ``"2,3"`` -> ``[1, 2]``.

    The default is ``rest``: level 1 follows the data density (its cells are the semantic groups),
    the finer levels are balanced (they only need to tell items apart).
    """
    text = value.strip().lower()
    if text == "rest":
        return list(range(1, levels))
    if text == "last":
        return [levels - 1]
    if text == "all":
        return list(range(levels))
    try:
        chosen = sorted({int(v) - 1 for v in text.split(",") if v.strip()})
    except ValueError as e:
        raise OptionError("--sinkhorn-levels", f"expected rest, last, all or numbers like 2,3; got {value!r}") from e
    if not chosen or chosen[0] < 0 or chosen[-1] >= levels:
        raise OptionError("--sinkhorn-levels", f"level numbers must be between 1 and {levels}, got {value!r}")
    return chosen


def parse_codebook_sizes(value: str, levels: int) -> list[int]:
    """``"256"`` -> ``[256] * levels``; ``"256,256,128"`` -> per-level sizes (count must match)."""
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise OptionError("--codebook-size", f"expected an int or a comma-separated list, got {value!r}") from e
    if not sizes:
        raise OptionError("--codebook-size", "no size given")
    if len(sizes) == 1:
        return sizes * levels
    if len(sizes) != levels:
        raise OptionError("--codebook-size", f"{len(sizes)} sizes given for --levels {levels}")
    return sizes


# --------------------------------------------------------------------------------------------
# k-means (k-means++ seeding, Lloyd iterations), deterministic given a generator
# --------------------------------------------------------------------------------------------


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [N, K] (clamped at 0 against rounding)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None, :]).clamp_min_(0)


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre is drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [x[first]]
    d2 = _sq_dist(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: pick remaining centres uniformly
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial((d2 / total).cpu(), 1, generator=gen))
        centres.append(x[idx])
        d2 = torch.minimum(d2, _sq_dist(x, x[idx : idx + 1]).squeeze(1))
    return torch.stack(centres)


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from k-means++ seeds; empty clusters take the point farthest from its centre.

    Returns ``(centres [k, d], assignment [N])``. Deterministic given ``gen`` on CPU.
    """
    x = x.detach()
    centres = kmeans_plus_plus(x, k, gen)
    assign = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for it in range(max(1, iters)):
        d = _sq_dist(x, centres)
        new_assign = d.argmin(1)
        if it > 0 and torch.equal(new_assign, assign):
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = d.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)[: len(empty)]
            centres[empty] = x[far]
    return centres, _sq_dist(x, centres).argmin(1)


# --------------------------------------------------------------------------------------------
# Balanced assignment (Sinkhorn-Knopp)
# --------------------------------------------------------------------------------------------


def sinkhorn_code_bias(dist: torch.Tensor, eps: float, iters: int = 50) -> torch.Tensor:
    """Per-code bias ``b`` [K] such that ``argmin_k (dist - b)`` is the balanced (Sinkhorn) assignment.

    ``dist`` [N, K] is min-max normalised, then ``log Q = -dist / eps`` is alternately normalised
    over items (each code gets mass 1/K) and over codes (each item mass 1/N), in log space. The
    plan has the form ``log Q_ik = -dist_ik / (eps * span) + f_i + g_k``; the item potential ``f_i``
    does not change an item's argmax over codes, so the assignment is ``argmin_k dist_ik - b_k``
    with ``b = eps * span * g`` in the units of ``dist``. Storing ``b`` makes the balanced
    assignment reproducible for items coded later, one at a time (``--apply``).
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

    Why (OneRec's balanced RQ-k-means): with a shared residual codebook, a few codes near the origin
    attract most small residuals ("hubs"); balancing the assignment spreads items over codes, and
    moving the centres to their balanced members keeps the reconstruction error low (balancing a
    plain k-means codebook after the fact costs much more of it).
    """
    centres, assign = kmeans(x, k, iters, gen)
    for it in range(max(1, iters)):
        d = _sq_dist(x, centres)
        new_assign = (d - sinkhorn_code_bias(d, eps, sinkhorn_iters)).argmin(1)
        if it > 0 and torch.equal(new_assign, assign):
            break
        assign = new_assign
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    d = _sq_dist(x, centres)
    return centres, (d - sinkhorn_code_bias(d, eps, sinkhorn_iters)).argmin(1)


# --------------------------------------------------------------------------------------------
# The model: input normalisation, optional MLP encoder/decoder, residual codebooks
# --------------------------------------------------------------------------------------------


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(dims) - 1):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualQuantizer(nn.Module):
    """Residual codebooks over a latent; the latent is an MLP (rqvae) or the normalised input (rqkmeans)."""

    def __init__(self, input_dim: int, config: QuantizeConfig) -> None:
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_scale", torch.ones(()))
        if config.method == "rqvae":
            self.encoder: nn.Module = _mlp([input_dim, *config.hidden, config.code_dim])
            self.decoder: nn.Module = _mlp([config.code_dim, *reversed(config.hidden), input_dim])
            latent_dim = config.code_dim
        else:
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()
            latent_dim = input_dim
        self.latent_dim = latent_dim
        self.codebooks = nn.ParameterList([nn.Parameter(torch.zeros(k, latent_dim)) for k in config.codebook_sizes])
        for level, k in enumerate(config.codebook_sizes):  # 0 = nearest code; set by fit_code_biases
            self.register_buffer(f"code_bias_{level}", torch.zeros(k))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_scale

    def fit_normalisation(self, x: torch.Tensor, chunk: int = 65536) -> None:
        """Mean and RMS norm of the centred input, in chunks (no full-size temporary)."""
        mean = x.sum(0, dtype=torch.float64) / x.shape[0]
        sq = sum(float((x[i : i + chunk].double() - mean).pow(2).sum()) for i in range(0, x.shape[0], chunk))
        self.input_mean.copy_(mean.float())
        self.input_scale.fill_(max(math.sqrt(sq / x.shape[0]), 1e-12))

    def code_bias(self, level: int) -> torch.Tensor:
        return getattr(self, f"code_bias_{level}")

    def latent(self, xn: torch.Tensor) -> torch.Tensor:
        return self.encoder(xn)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Greedy residual coding: ``(codes [N, L], z_q [N, d], residuals per level)``.

        Each level takes ``argmin_k ||r - C[k]||^2 - bias_k``; the biases are 0 (nearest code)
        except on balanced levels after :func:`fit_code_biases`. Row-wise, so it can run in chunks.
        """
        residual = z
        z_q = torch.zeros_like(z)
        codes, residuals = [], []
        for level, book in enumerate(self.codebooks):
            residuals.append(residual)
            dist = _sq_dist(residual.detach(), book.detach())
            idx = (dist - self.code_bias(level)).argmin(1)
            chosen = _gather_codes(book, idx)
            codes.append(idx)
            z_q = z_q + chosen
            residual = residual - chosen
        return torch.stack(codes, 1), z_q, residuals

    def reconstruct(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder output in *input* units."""
        return self.decoder(z_q) * self.input_scale + self.input_mean

    def init_codebooks(self, z: torch.Tensor, gen: torch.Generator) -> None:
        """k-means on each level's residuals, level by level (balanced k-means on balanced levels)."""
        cfg = self.config
        balanced = parse_sinkhorn_levels(cfg.sinkhorn_levels, cfg.levels) if cfg.sinkhorn_eps else []
        residual = z.detach()
        for level, book in enumerate(self.codebooks):
            if level in balanced:
                centres, assign = balanced_kmeans(residual, book.shape[0], cfg.kmeans_iters, gen,
                                                  cfg.sinkhorn_eps, cfg.sinkhorn_iters)
            else:
                centres, assign = kmeans(residual, book.shape[0], cfg.kmeans_iters, gen)
            with torch.no_grad():
                book.copy_(centres)
            residual = residual - centres[assign]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    if n <= batch_size:
        return [torch.arange(n)]
    perm = torch.randperm(n, generator=gen)
    return list(perm.split(batch_size))


def _gather_codes(book: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``book[codes]`` with a deterministic backward.

    Why: the backward of advanced indexing (``index_put_`` with accumulation) adds the gradients of
    items that share a code in a thread-dependent order on a multi-threaded CPU, so two identical
    runs differed in the last bits, and the chaotic training turned that into different SIDs.
    ``index_select``'s backward accumulates in a fixed order.
    """
    return book.index_select(0, codes)


def _reinit_dead_codes(model: ResidualQuantizer, usage: list[torch.Tensor], residuals: list[torch.Tensor],
                       codes: torch.Tensor, gen: torch.Generator) -> int:
    """Re-seed codes unused during the last window on residuals of items in the most crowded codes.

    Why crowded codes: a dead code is wasted capacity, and splitting the busiest cells is what
    lowers collisions. A small jitter keeps the new code from exactly duplicating an item.
    """
    revived = 0
    with torch.no_grad():
        for level, book in enumerate(model.codebooks):
            dead = (usage[level] == 0).nonzero().flatten()
            if len(dead) == 0:
                continue
            res = residuals[level].detach()
            counts = torch.bincount(codes[:, level], minlength=book.shape[0]).float()
            weights = counts[codes[:, level]]  # items in crowded codes are drawn more often
            pick = torch.multinomial(weights.cpu() / weights.sum().cpu(), len(dead), replacement=len(dead) > len(res),
                                     generator=gen)
            scale = res.std().clamp_min(1e-6) * 0.01
            noise = torch.randn(len(dead), res.shape[1], generator=gen).to(res.device) * scale
            book[dead] = res[pick.to(res.device)] + noise
            revived += len(dead)
    return revived


def train_rqvae(model: ResidualQuantizer, x: torch.Tensor, cfg: QuantizeConfig, gen: torch.Generator,
                checkpoint: Checkpointer | None = None, regulariser: nn.Module | None = None) -> dict[str, Any]:
    """Warm up the autoencoder, k-means-initialise the codebooks, then train the whole RQ-VAE.

    ``checkpoint`` saves the state at the end of RQ-VAE epochs (after the warm-up and the codebook
    initialisation); a resumed run skips both and continues from the saved epoch. ``regulariser``
    (LETTER's terms, :mod:`uqf_cli.quantize_letter`) adds its loss to every RQ-VAE step.
    """
    modules: dict[str, nn.Module] = {"rqvae": model, **({"letter": regulariser} if regulariser is not None else {})}
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = x.shape[0]
    history: dict[str, Any] = {"revived_codes": 0}
    saved = checkpoint.load() if checkpoint is not None else None
    with runtime.progress() as bar:
        task = bar.add_task("rq-vae", total=cfg.warmup_epochs + cfg.epochs, status="warm-up")
        for _ in range(cfg.warmup_epochs if saved is None else 0):
            for idx in _batches(n, cfg.batch_size, gen):
                xb = x[idx]
                loss = (model.decoder(model.latent(xb)) - xb).pow(2).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            bar.advance(task)
        if saved is None:
            with torch.no_grad():
                model.init_codebooks(_latent_in_batches(model, x, cfg.batch_size), gen)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        usage = [torch.zeros(k, device=x.device) for k in cfg.codebook_sizes]
        recon = quant = torch.zeros(())
        first_epoch = 1
        if saved is not None:
            saved.restore(modules=modules, optimizers={"adamw": opt}, generators={"batches": gen})
            kept = saved.extra_tensors()
            usage = [kept[f"usage.{level}"].to(x.device) for level in range(cfg.levels)]
            history["revived_codes"] = int(saved.state["revived_codes"])
            recon, quant = torch.tensor(saved.state["recon"]), torch.tensor(saved.state["quant"])
            first_epoch = saved.epoch + 1
            bar.update(task, completed=cfg.warmup_epochs + saved.epoch)
        for epoch in range(first_epoch, cfg.epochs + 1):
            for idx in _batches(n, cfg.batch_size, gen):
                xb = x[idx]
                z = model.latent(xb)
                codes, z_q, residuals = model.quantize(z)
                # codebook loss pulls codes to (frozen) residuals, commitment pulls residuals to codes
                quant = sum(
                    (r.detach() - _gather_codes(book, c)).pow(2).sum(1).mean()
                    + cfg.beta * (r - _gather_codes(book, c).detach()).pow(2).sum(1).mean()
                    for r, book, c in zip(residuals, model.codebooks, codes.T, strict=True)
                )
                z_st = z + (z_q - z).detach()  # straight-through estimator
                recon = (model.decoder(z_st) - xb).pow(2).sum(1).mean()
                loss = recon + quant
                if regulariser is not None:
                    loss = loss + regulariser(idx, z, z_q, codes, list(model.codebooks))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for level in range(cfg.levels):
                    usage[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_sizes[level])
            if cfg.reinit_every and epoch % cfg.reinit_every == 0 and epoch < cfg.epochs:
                history["revived_codes"] += _reinit_dead_codes(model, usage, residuals, codes, gen)
                usage = [torch.zeros_like(u) for u in usage]
            bar.update(task, advance=1, status=f"recon {float(recon.detach()):.4f} vq {float(quant.detach()):.4f}")
            if checkpoint is not None:
                checkpoint.epoch_done(epoch, functools.partial(
                    Snapshot.capture, epoch, modules=modules, optimizers={"adamw": opt},
                    generators={"batches": gen}, tensors={f"usage.{level}": u for level, u in enumerate(usage)},
                    state={"revived_codes": history["revived_codes"], "recon": float(recon.detach()),
                           "quant": float(quant.detach())}), last=epoch == cfg.epochs)
    history["final_train_recon"] = float(recon.detach())
    history["final_train_vq"] = float(quant.detach())
    if regulariser is not None:
        history["final_train_letter"] = dict(getattr(regulariser, "last", {}))
    return history


def _latent_in_batches(model: ResidualQuantizer, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.latent(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def fit_sample_rows(n: int, cfg: QuantizeConfig) -> torch.Tensor:
    """Rows used to fit: all of them up to ``cfg.fit_sample``, else a seeded random sample (sorted).

    Why a sample: k-means, the autoencoder and the balancing biases need far fewer items than a
    large catalogue has (8,192 items give 32 per level-1 code), and fitting on a fixed-size sample
    bounds time and memory; every item is still coded, in chunks, by :func:`encode`.
    """
    if n <= cfg.fit_sample:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(cfg.seed + 7919)
    return torch.randperm(n, generator=gen)[: cfg.fit_sample].sort().values


@torch.no_grad()
def fit_code_biases(model: ResidualQuantizer, z: torch.Tensor, cfg: QuantizeConfig) -> list[int]:
    """Balanced levels: Sinkhorn on the fitted items' residuals, level by level, stored as code biases.

    Level ``l``'s biases are computed on the residuals left by the (already balanced) levels above
    it, so the stored model reproduces the whole assignment. Returns the balanced level indices.
    """
    if cfg.sinkhorn_eps is None:
        return []
    balanced = parse_sinkhorn_levels(cfg.sinkhorn_levels, cfg.levels)
    residual = z
    for level, book in enumerate(model.codebooks):
        dist = _sq_dist(residual, book)
        if level in balanced:
            model.code_bias(level).copy_(sinkhorn_code_bias(dist, cfg.sinkhorn_eps, cfg.sinkhorn_iters))
        residual = residual - book[(dist - model.code_bias(level)).argmin(1)]
    return balanced


def fit_quantizer(embeddings: torch.Tensor, cfg: QuantizeConfig, device: torch.device,
                  checkpoint: Checkpointer | None = None,
                  regulariser: LetterRegulariser | None = None) -> tuple[ResidualQuantizer, dict[str, Any]]:
    """Fit a quantizer (rqvae or rqkmeans) on ``embeddings`` [N, d]; deterministic given ``cfg.seed``.

    Normalisation uses every item (in chunks); training, k-means and balancing use
    :func:`fit_sample_rows`. ``regulariser`` (rows aligned with ``embeddings``) adds LETTER's terms.
    """
    cfg.validate(embeddings.shape[0])
    runtime.seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = ResidualQuantizer(embeddings.shape[1], cfg)
    model.fit_normalisation(embeddings)
    model.to(device)
    rows = fit_sample_rows(embeddings.shape[0], cfg)
    x = model.normalise(embeddings[rows].to(device, torch.float32))
    if cfg.method == "rqkmeans":
        with torch.no_grad():
            model.init_codebooks(x, gen)
        history: dict[str, Any] = {}
    else:
        reg = regulariser.restricted(rows).to(device) if regulariser is not None else None
        history = train_rqvae(model, x, cfg, gen, checkpoint, reg)
    model.eval()
    with torch.no_grad():
        balanced = fit_code_biases(model, _latent_in_batches(model, x, cfg.batch_size), cfg)
    history["fit_items"] = len(rows)
    history["balanced_levels"] = [level + 1 for level in balanced]
    return model, history


@torch.no_grad()
def encode(model: ResidualQuantizer, embeddings: torch.Tensor,
           batch_size: int = 8192) -> tuple[np.ndarray, dict[str, float], torch.Tensor]:
    """Codes [N, L] for raw embeddings, reconstruction errors, and the last level's residuals.

    Chunks of ``batch_size`` rows: the assignment is row-wise (nearest code minus the stored
    per-code bias), so memory stays ``O(batch_size x codebook)`` beyond the outputs.
    """
    dev = next(iter(model.buffers())).device
    codes, last_res = [], []
    sq_err = centred = latent_err = 0.0
    for i in range(0, embeddings.shape[0], batch_size):
        xb = embeddings[i : i + batch_size].to(dev, torch.float32)
        z = model.latent(model.normalise(xb))
        c, z_q, residuals = model.quantize(z)
        codes.append(c.cpu())
        last_res.append(residuals[-1].cpu())
        sq_err += float((model.reconstruct(z_q) - xb).pow(2).sum(dtype=torch.float64))
        centred += float((xb - model.input_mean).pow(2).sum(dtype=torch.float64))
        latent_err += float((z - z_q).pow(2).sum(dtype=torch.float64))
    n = embeddings.shape[0]
    errors = {"recon_mse": sq_err / n, "recon_rel": sq_err / max(centred, 1e-12), "latent_quant_mse": latent_err / n}
    return torch.cat(codes).numpy().astype(np.int64), errors, torch.cat(last_res)


# --------------------------------------------------------------------------------------------
# Statistics and collisions
# --------------------------------------------------------------------------------------------


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
    codes = codes.copy()
    reserved = reserved or set()
    dist = _sq_dist(last_residuals.detach().double(), last_book.detach().double()).cpu()
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
            raise OptionError("--dedup", f"more than {last_book.shape[0]} items share the prefix {list(prefix)}; "
                              "use --dedup level or a larger last codebook")
    return codes, rounds


def _colliding_rows(codes: np.ndarray, reserved: set[tuple[int, ...]]) -> list[int]:
    rows = sorted(r for group in collision_groups(codes).values() for r in group)
    rows += [r for r, sid in enumerate(map(tuple, codes.tolist())) if sid in reserved]
    return sorted(set(rows))


# --------------------------------------------------------------------------------------------
# The stage: quantize a file, apply a saved quantizer
# --------------------------------------------------------------------------------------------


@dataclass
class QuantizeResult:
    """What the command prints: stats, output paths and the table itself."""

    table: io.SidTable
    stats: dict[str, Any]
    outputs: dict[str, str]


def _load_valid_embeddings(path: str | Path) -> io.EmbeddingFile:
    emb = io.load_embeddings(path)  # refuses empty, NaN/Inf, id mismatches
    if float(emb.embeddings.std()) == 0.0:
        raise InputError(path, "all embeddings are identical; nothing to quantize")
    return emb


def _check_outputs(output: Path, fmt: str, save_model: Path | None, force: bool) -> Path | None:
    if fmt not in ("jsonl", "lcrec"):
        raise OptionError("--format", f"unknown format {fmt!r} (use jsonl or lcrec)")
    io.check_output(output, force)
    lcrec = lcrec_index_path(output) if fmt == "lcrec" else None
    if lcrec is not None:
        io.check_output(lcrec, force)
    if save_model is not None:
        io.check_output(save_model, force)
    return lcrec


def lcrec_index_path(output: str | Path) -> Path:
    """``sids.jsonl`` -> ``sids.index.json`` beside it."""
    p = Path(output)
    return p.with_name(p.name.split(".")[0] + ".index.json")


def _finalise_codes(model: ResidualQuantizer, emb: torch.Tensor, cfg: QuantizeConfig) -> tuple[
        np.ndarray, np.ndarray, dict[str, Any]]:
    """Encode, measure, deduplicate: ``(raw codes, final codes, stats)``."""
    raw, errors, last_res = encode(model, emb, cfg.batch_size)
    stats: dict[str, Any] = {"items": len(raw), "method": cfg.method, "levels": cfg.levels,
                             "per_level": level_stats(raw, cfg.codebook_sizes),
                             "raw_collision_rate": collision_rate(raw),
                             "raw_collision_groups": len(collision_groups(raw)),
                             "max_items_per_sid": max([len(g) for g in collision_groups(raw).values()] or [1]),
                             **errors, "dedup": cfg.dedup}
    if stats["raw_collision_groups"] == 0:
        final = raw
    elif cfg.dedup == "level":
        final = dedup_by_level(raw)
    else:
        final, rounds = dedup_by_sinkhorn(raw, last_res, model.codebooks[-1], cfg)
        stats["dedup_rounds"] = rounds
        stats["dedup_changed_items"] = int((final != raw).any(1).sum())
    stats["final_levels"] = int(final.shape[1])
    stats["final_collision_rate"] = collision_rate(final)
    return raw, final, stats


def _final_sizes(cfg: QuantizeConfig, final: np.ndarray) -> list[int]:
    sizes = list(cfg.codebook_sizes)
    if final.shape[1] > len(sizes):
        sizes.append(int(final[:, -1].max()) + 1)
    return sizes


def quantize(
    embeddings_path: str | Path,
    output: str | Path,
    cfg: QuantizeConfig,
    save_model: str | Path | None = None,
    fmt: str = "jsonl",
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    letter: LetterConfig | None = None,
) -> QuantizeResult:
    """Quantize an embedding file into a SIDs file (and optionally save the quantizer).

    ``rqvae`` keeps a checkpoint ``<output>.ckpt.st`` while training; ``resume`` continues from it.
    ``letter`` trains with LETTER's collaborative and diversity terms (:mod:`uqf_cli.quantize_letter`).
    """
    output = Path(output)
    save_model = Path(save_model) if save_model else None
    lcrec = _check_outputs(output, fmt, save_model, force)
    emb = _load_valid_embeddings(embeddings_path)
    cfg.validate(len(emb.item_ids))
    params, inputs, reg, letter_stats = _letter_setup(emb, embeddings_path, cfg, letter)
    dev = runtime.resolve_device(device)
    runtime.info(f"quantizing {len(emb.item_ids):,} {emb.modality} embeddings (dim {emb.dim}) with {cfg.method}, "
                 f"{cfg.levels} x {cfg.codebook_sizes} codes on {dev}")
    ckpt = (Checkpointer(output, "quantize", params, inputs, resume=resume) if cfg.method == "rqvae" else None)
    model, history = fit_quantizer(emb.embeddings, cfg, dev, ckpt, reg)
    raw, final, stats = _finalise_codes(model, emb.embeddings, cfg)
    stats["training"] = history
    if letter_stats:
        stats["letter"] = letter_stats
    sizes = _final_sizes(cfg, final)
    provenance = io.make_provenance("quantize", params, inputs,
                                    modality=emb.modality, stats=stats)
    table = io.SidTable(item_ids=list(emb.item_ids), codes=final, codebook_sizes=sizes, provenance=provenance,
                        stats=stats, dataset_fingerprint=emb.dataset_fingerprint)
    outputs = _write_outputs(table, output, lcrec, force)
    if save_model is not None:
        save_quantizer(save_model, model, cfg, table, raw, provenance, force)
        outputs["model"] = str(save_model)
    if ckpt is not None:
        ckpt.finish()
    return QuantizeResult(table, stats, outputs)


def _letter_setup(emb: io.EmbeddingFile, embeddings_path: str | Path, cfg: QuantizeConfig,
                  letter: LetterConfig | None) -> tuple[dict[str, Any], dict[str, Any], Any, dict[str, Any]]:
    """Provenance parameters and inputs, and the LETTER regulariser when asked for (else ``None``)."""
    params: dict[str, Any] = asdict(cfg)
    inputs: dict[str, Any] = {"embeddings": embeddings_path}
    if letter is None:
        return params, inputs, None, {}
    letter.validate(cfg.method, cfg.codebook_sizes)
    reg, summary = build_regulariser(letter, emb, cfg.code_dim, cfg.codebook_sizes, cfg.seed)
    return {**params, "letter": asdict(letter)}, {**inputs, "collab": letter.collab}, reg, {
        **summary, "w_collab": letter.w_collab, "w_diversity": letter.w_diversity}


def _write_outputs(table: io.SidTable, output: Path, lcrec: Path | None, force: bool) -> dict[str, str]:
    io.write_sids(output, table, force=force)
    outputs = {"sids": str(output)}
    if lcrec is not None:
        io.write_lcrec_index(lcrec, table, force=force)
        outputs["lcrec_index"] = str(lcrec)
    return outputs


def save_quantizer(path: Path, model: ResidualQuantizer, cfg: QuantizeConfig, table: io.SidTable, raw: np.ndarray,
                   provenance: dict[str, Any], force: bool) -> None:
    """Weights + config + the coded items (so ``--apply`` can report and avoid collisions)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state["items.raw_codes"] = torch.as_tensor(raw)
    state["items.final_codes"] = torch.as_tensor(table.codes)
    config = {**asdict(cfg), "input_dim": model.input_dim, "final_codebook_sizes": table.codebook_sizes}
    io.save_model_file(path, QUANTIZER_KIND, state, config, provenance, force=force,
                       item_ids=table.item_ids, dataset_fingerprint=table.dataset_fingerprint or "")


def load_quantizer(path: str | Path) -> tuple[ResidualQuantizer, QuantizeConfig, dict[str, Any]]:
    """Rebuild a saved quantizer; returns ``(model, config, extras)`` with the coded items in extras."""
    state, config, meta = io.load_model_file(path, QUANTIZER_KIND)
    known = {f for f in QuantizeConfig.__dataclass_fields__}
    try:
        cfg = QuantizeConfig(**{k: v for k, v in config.items() if k in known})
        model = ResidualQuantizer(int(config["input_dim"]), cfg)
        for level, k in enumerate(cfg.codebook_sizes):  # files saved before balanced levels existed
            state.setdefault(f"code_bias_{level}", torch.zeros(k))
        extras = {"raw_codes": state.pop("items.raw_codes").numpy(),
                  "final_codes": state.pop("items.final_codes").numpy(),
                  "item_ids": list(meta.get("item_ids", [])), "final_codebook_sizes": config["final_codebook_sizes"],
                  "dataset_fingerprint": meta.get("dataset_fingerprint") or None,
                  "modality": (meta.get("provenance") or {}).get("modality")}
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        raise InputError(path, f"quantizer file is incomplete or inconsistent ({e})") from e
    model.eval()
    return model, cfg, extras


def apply_quantizer(
    model_path: str | Path,
    embeddings_path: str | Path,
    output: str | Path,
    fmt: str = "jsonl",
    device: str = "auto",
    force: bool = False,
) -> QuantizeResult:
    """Give new items SIDs with a saved quantizer: encoder + nearest codes at every level.

    Raw collisions with the items the quantizer was fitted on are reported; final SIDs are made
    unique against them the same way the original run deduplicated (next free number in the extra
    level, or nearest free last-level code).
    """
    output = Path(output)
    lcrec = _check_outputs(output, fmt, None, force)
    model, cfg, extras = load_quantizer(model_path)
    emb = _load_valid_embeddings(embeddings_path)
    if emb.dim != model.input_dim:
        raise InputError(embeddings_path, f"embeddings have dim {emb.dim}, the quantizer expects {model.input_dim}")
    trained_on = extras.get("modality")
    if trained_on and emb.modality not in ("unknown", trained_on):  # same dim, another space: codes mean little
        runtime.warn(f"{embeddings_path}: {emb.modality!r} embeddings, but the quantizer {model_path} was trained "
                     f"on {trained_on!r} embeddings; their codes are not comparable")
    dev = runtime.resolve_device(device)
    model.to(dev)
    raw, errors, last_res = encode(model, emb.embeddings, cfg.batch_size)
    old_ids = extras["item_ids"]
    new_set = set(emb.item_ids)
    keep_old = [k for k, iid in enumerate(old_ids) if iid not in new_set]  # re-coded items replace their old SIDs
    old_raw = {tuple(extras["raw_codes"][k].tolist()) for k in keep_old}
    old_final = extras["final_codes"][keep_old] if keep_old else None
    hits_existing = sum(tuple(r) in old_raw for r in raw.tolist())
    stats: dict[str, Any] = {"items": len(raw), "method": cfg.method, "applied": True,
                             "per_level": level_stats(raw, cfg.codebook_sizes), **errors,
                             "raw_collision_rate": collision_rate(raw),
                             "collisions_with_existing": hits_existing,
                             "collision_rate_with_existing": hits_existing / len(raw)}
    sizes = list(extras["final_codebook_sizes"])
    if len(sizes) > cfg.levels:  # the original run appended a dedup level: new items get one too
        final = dedup_by_level(raw, old_final)
        sizes[-1] = max(sizes[-1], int(final[:, -1].max()) + 1)
        if sizes[-1] > extras["final_codebook_sizes"][-1]:
            runtime.warn(f"the dedup level now needs {sizes[-1]} codes (the model was trained with "
                         f"{extras['final_codebook_sizes'][-1]})")
    elif hits_existing or stats["raw_collision_rate"] > 0:
        reserved = {tuple(r) for r in (old_final.tolist() if old_final is not None else [])}
        final, _ = dedup_by_sinkhorn(raw, last_res, model.codebooks[-1], cfg, reserved)
    else:
        final = raw
    stats["final_collision_rate"] = collision_rate(final)
    provenance = io.make_provenance("quantize-apply", {"quantizer": str(model_path)},
                                    {"quantizer": model_path, "embeddings": embeddings_path},
                                    modality=emb.modality, stats=stats)
    table = io.SidTable(item_ids=list(emb.item_ids), codes=final, codebook_sizes=sizes, provenance=provenance,
                        stats=stats, dataset_fingerprint=emb.dataset_fingerprint)
    outputs = _write_outputs(table, output, lcrec, force)
    if hits_existing:
        runtime.warn(f"{hits_existing} of {len(raw)} new items got the raw SID of an existing item "
                     "(made unique in the output)")
    return QuantizeResult(table, stats, outputs)
