"""Train the Unified Q-Former on the hybrid objective and embed every item (docs/fuse.md)."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from uqf_cli.core.runtime import progress
from uqf_cli.files.checkpoint import Checkpointer, Snapshot
from uqf_cli.fuse.config import FuseOptions
from uqf_cli.fuse.memory import MemoryInputs
from uqf_cli.fuse.model import FuserConfig, UnifiedQFormer


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should match row i of ``b`` against the other rows (in-batch)."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def modality_masks(
    has_collab: torch.Tensor, p_collab: float, p_text: float, enabled: bool, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(text_present, collab_present) after asymmetric modality dropout; never both dropped."""
    n = has_collab.shape[0]
    if not enabled:
        return torch.ones(n, dtype=torch.bool), has_collab.clone()
    u = torch.rand(n, generator=gen)
    drop_collab = has_collab & (u < p_collab)
    drop_text = has_collab & ~drop_collab & (u >= p_collab) & (u < p_collab + p_text)
    return ~drop_text, has_collab & ~drop_collab


def sample_positives(anchors: np.ndarray, neigh: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn neighbour per anchor (-1 when it has none)."""
    out = np.full(len(anchors), -1, dtype=np.int64)
    for j, a in enumerate(anchors):
        cand = neigh[a]
        if len(cand):
            out[j] = cand[rng.integers(len(cand))]
    return out


@dataclass
class TrainResult:
    model: UnifiedQFormer
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def train_fuser(
    mem: MemoryInputs,
    text_targets: torch.Tensor,
    collab_targets: torch.Tensor,
    structural: list[np.ndarray],
    semantic: list[np.ndarray],
    cfg: FuserConfig,
    opts: FuseOptions,
    device: torch.device,
    checkpoint: Checkpointer | None = None,
) -> TrainResult:
    """Minimise the hybrid objective (docs/fuse.md) with AdamW; returns the model and its loss curve.

    ``checkpoint`` saves the loop's state at epoch ends and, with ``--resume``, restores it first."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    model = UnifiedQFormer(cfg).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    n = len(mem)
    steps_per_epoch = max(1, math.ceil(n / opts.batch_size))
    total = steps_per_epoch * opts.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / max(1, total // 20))
                                              * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    w_s, w_m = opts.contrastive_weights()
    result = TrainResult(model)
    start = time.perf_counter()
    model.train()
    live = {"modules": {"fuser": model}, "optimizers": {"adamw": optim}, "schedulers": {"warmup_cosine": sched},
            "generators": {"dropout": gen}, "numpy_generators": {"positives": rng}}
    first_epoch, saved = 0, checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        saved.restore(**live)
        first_epoch, result.curve = saved.epoch, list(saved.state["curve"])
    with progress() as bar:
        task = bar.add_task("fusing", total=opts.epochs, completed=first_epoch, status="")
        for epoch in range(first_epoch, opts.epochs):
            perm = rng.permutation(n)
            sums: dict[str, float] = {}
            for s in range(0, n, opts.batch_size):
                anchors = perm[s:s + opts.batch_size]
                if len(anchors) < 2:
                    continue
                losses = _step_losses(model, mem, text_targets, collab_targets, anchors, structural, semantic,
                                      (w_s, w_m), opts, gen, rng, device)
                loss = sum(losses.values(), torch.zeros((), device=device))
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                sched.step()
                for name, v in {"loss": loss, **losses}.items():
                    sums[name] = sums.get(name, 0.0) + float(v.detach())
            point = {"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 5) for k, v in sums.items()}}
            result.curve.append(point)
            bar.update(task, advance=1, status=f"loss {point.get('loss', float('nan')):.4f}")
            if checkpoint is not None:
                checkpoint.epoch_done(epoch + 1, functools.partial(Snapshot.capture, epoch + 1, **live,
                                                                   state={"curve": result.curve}),
                                      last=epoch + 1 == opts.epochs)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def _step_losses(
    model: UnifiedQFormer,
    mem: MemoryInputs,
    text_targets: torch.Tensor,
    collab_targets: torch.Tensor,
    anchors: np.ndarray,
    structural: list[np.ndarray],
    semantic: list[np.ndarray],
    weights: tuple[float, float],
    opts: FuseOptions,
    gen: torch.Generator,
    rng: np.random.Generator,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One batch: each anchor gets ONE positive, structural with probability w_s / (w_s + w_m) (semantic
    otherwise, or when it has no structural neighbour), so a batch costs 2B rows, not 3B. Every row draws
    its own modality dropout. Returns the loss terms; the contrastive terms are weighted by their share of
    anchors, so the weights act through how often each kind of positive is drawn."""
    w_s, w_m = weights
    pos_s = sample_positives(anchors, structural, rng) if w_s > 0 else np.full(len(anchors), -1)
    pos_m = sample_positives(anchors, semantic, rng) if w_m > 0 else np.full(len(anchors), -1)
    want_s = rng.random(len(anchors)) < (w_s / (w_s + w_m))
    use_s = (pos_s >= 0) & (want_s | (pos_m < 0))
    positives = np.where(use_s, pos_s, pos_m)
    kept = positives >= 0
    anchors, positives, use_s = anchors[kept], positives[kept], use_s[kept]
    rows = torch.from_numpy(np.concatenate([anchors, positives]))
    t_present, c_present = modality_masks(mem.has_collab[rows], opts.p_drop_collab, opts.p_drop_text,
                                          opts.modality_dropout, gen)
    own_collab = c_present
    borrow = borrow_mask(mem, t_present, c_present)
    if borrow is not None:
        c_present = c_present | borrow
    text_seq, collab_seq = mem.batch(rows, borrow)
    out = model(text_seq.to(device), collab_seq.to(device), t_present.to(device), c_present.to(device),
                None if borrow is None else borrow.to(device))
    b = len(anchors)
    z = out.fused
    losses: dict[str, torch.Tensor] = {}
    for name, sel in (("structural", use_s), ("semantic", ~use_s)):
        mask = torch.from_numpy(sel).to(device)
        if int(mask.sum()) >= 2:
            losses[name] = float(mask.float().mean()) * info_nce(z[:b][mask], z[b:][mask], opts.temperature)
    if opts.w_recon > 0:
        warm = mem.has_collab[rows].to(device)
        rec = 1 - F.cosine_similarity(out.recon_text, text_targets[rows].to(device), dim=-1).mean()
        if bool(warm.any()):
            rc = 1 - F.cosine_similarity(out.recon_collab[warm], collab_targets[rows].to(device)[warm], dim=-1)
            rec = rec + rc.mean()
        losses["recon"] = opts.w_recon * rec
    if opts.w_align > 0:
        both = (t_present & c_present).to(device)
        if int(both.sum()) >= 2:
            losses["align"] = opts.w_align * info_nce(out.text_branch[both], out.collab_branch[both],
                                                      opts.temperature)
    if opts.w_distill > 0:
        student = (mem.has_collab[rows] & ~own_collab & t_present).nonzero().squeeze(1)
        if len(student):
            teacher = full_view(model, mem, rows[student], device)
            losses["distill"] = opts.w_distill * (1 - F.cosine_similarity(z[student.to(device)], teacher,
                                                                          dim=-1)).mean()
    return losses


def borrow_mask(mem: MemoryInputs, t_present: torch.Tensor, c_present: torch.Tensor) -> torch.Tensor | None:
    """Rows that read a borrowed collab memory (``--cold-collab borrow``): text present, own collab absent."""
    return None if mem.borrow_neighbours is None else t_present & ~c_present


@torch.no_grad()
def full_view(model: UnifiedQFormer, mem: MemoryInputs, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The fused vectors of warm ``rows`` with both modalities present: the distillation target (no gradient)."""
    text_seq, collab_seq = mem.batch(rows)
    on = torch.ones(len(rows), dtype=torch.bool, device=device)
    return model(text_seq.to(device), collab_seq.to(device), on, on).fused


@torch.no_grad()
def embed_items(
    model: UnifiedQFormer, mem: MemoryInputs, device: torch.device, batch: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused embeddings and gate values for every item; collab-less items take the text-only path."""
    model.eval()
    fused, gates = [], []
    for s in range(0, len(mem), batch):
        sl = slice(s, s + batch)
        present = torch.ones(mem.text[sl].shape[0], dtype=torch.bool)
        has_collab = mem.has_collab[sl]
        borrow = borrow_mask(mem, present, has_collab)
        text_seq, collab_seq = mem.batch(sl, borrow)
        collab_on = has_collab if borrow is None else has_collab | borrow
        out = model(text_seq.to(device), collab_seq.to(device), present.to(device), collab_on.to(device),
                    None if borrow is None else borrow.to(device))
        fused.append(out.fused.float().cpu())
        gates.append(out.gate.float().cpu())
    return torch.cat(fused), torch.cat(gates)
