"""Fit a quantizer: RQ-VAE training (warm-up, k-means initialisation, dead-code re-seeding) or
residual k-means, on a seeded sample, then the balancing biases."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from uqf_cli.core.runtime import progress, seed_everything
from uqf_cli.files.checkpoint import Checkpointer, Snapshot
from uqf_cli.quantize.config import QuantizeConfig, parse_sinkhorn_levels
from uqf_cli.quantize.kmeans import sq_dist
from uqf_cli.quantize.letter import LetterRegulariser
from uqf_cli.quantize.model import ResidualQuantizer, gather_codes
from uqf_cli.quantize.sinkhorn import sinkhorn_code_bias


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    if n <= batch_size:
        return [torch.arange(n)]
    perm = torch.randperm(n, generator=gen)
    return list(perm.split(batch_size))


def _reinit_dead_codes(model: ResidualQuantizer, usage: list[torch.Tensor], residuals: list[torch.Tensor],
                       codes: torch.Tensor, gen: torch.Generator) -> int:
    """Re-seed codes unused during the last window on residuals of items in the most crowded codes.

    Splitting the busiest cells lowers collisions; a small jitter keeps a new code off the item itself.
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
    (LETTER's terms, :mod:`uqf_cli.quantize.letter`) adds its loss to every RQ-VAE step.
    """
    modules: dict[str, nn.Module] = {"rqvae": model, **({"letter": regulariser} if regulariser is not None else {})}
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = x.shape[0]
    history: dict[str, Any] = {"revived_codes": 0}
    saved = checkpoint.load() if checkpoint is not None else None
    with progress() as bar:
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
                    (r.detach() - gather_codes(book, c)).pow(2).sum(1).mean()
                    + cfg.beta * (r - gather_codes(book, c).detach()).pow(2).sum(1).mean()
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

    A fixed-size sample bounds time and memory; every item is still coded, in chunks, by ``encode``.
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
        dist = sq_dist(residual, book)
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
    ``cfg`` is taken as valid (:func:`uqf_cli.quantize.quantize` validates it once).
    """
    cfg = cfg.resolved(embeddings.shape[0])
    seed_everything(cfg.seed)
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
