"""Hybrid training: TIGER's next-SID cross-entropy plus ``dense_weight`` times the dense head's loss.

Everything TIGER-shaped is TIGER's (vocabulary, samples, length-bucketed batches, schedule, optimizer,
lean forward, beam search); what is added is the dense query from the same forward, its loss against
the target item's vector, and validation in all three ranking modes (the stored mode selects the epoch).
Single process (no DDP); resumable like TIGER.

The head's parameters (``W_q``, ``A``, the per-item residual ``b`` of ``--dense-item-ids``) join TIGER's one
AdamW group, so ``b`` gets the weight decay of the T5's token embeddings and every other weight
(``--weight-decay``); a cold item's row of ``b`` stays zero under it (:mod:`.model`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, make_provenance, save_model_file
from uqf_cli.files.checkpoint import Checkpointer, Snapshot
from uqf_cli.rec.base import check_sids_cover, training_samples, write_model_meta
from uqf_cli.rec.hybrid.model import DenseHead, dense_loss, encoder_pool
from uqf_cli.rec.hybrid.options import BACKBONE, RANK_MODES, HybridOptions
from uqf_cli.rec.hybrid.recommender import HEAD_FILE, HEAD_KIND, HybridRecommender
from uqf_cli.rec.item_vectors import aligned_item_vectors, save_item_vectors
from uqf_cli.rec.ranking import item_counts, ndcg_at_k
from uqf_cli.rec.tiger.model import build_model, use_fast_dropout
from uqf_cli.rec.tiger.t5_lean import decode_hidden, encode, hidden_to_logits
from uqf_cli.rec.tiger.training import (
    _amp,
    _length_bucketed_batches,
    _param_digest,
    _tensorize,
    loop_snapshot,
    make_optimizer,
    make_scheduler,
    optimizer_step,
    resumed_loop,
    validation_sample,
)
from uqf_cli.rec.tiger.vocab import TigerVocab
from uqf_cli.rec.weight_average import averaged, make_average


class _Net(torch.nn.Module):
    """The T5 and the dense head as one module (one optimizer, one gradient clip, one checkpoint)."""

    def __init__(self, t5: torch.nn.Module, head: DenseHead) -> None:
        super().__init__()
        self.t5, self.head = t5, head


def _losses(net: _Net, opts: HybridOptions, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
            targets: torch.Tensor, warm_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(generation cross-entropy, dense loss) of one batch, from one encoder and one decoder pass."""
    t5 = net.t5
    enc = encode(t5, input_ids, mask)
    start = torch.full_like(labels[:, :1], t5.config.decoder_start_token_id)
    hidden = decode_hidden(t5, torch.cat([start, labels[:, :-1]], dim=1), enc, mask)
    logits = hidden_to_logits(t5, hidden)
    gen = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
    pooled = hidden[:, 0] if opts.dense_query == "decoder" else encoder_pool(enc, mask)
    with torch.autocast(device_type=enc.device.type, enabled=False):  # cosines / temperature in fp32
        query = net.head.queries(pooled.float())
        dense = dense_loss(net.head, query, targets, opts.dense_loss, opts.temperature, warm_rows)
    return gen, dense


def _step(net: _Net, opts: HybridOptions, optimizer, sched, scaler, amp_dtype, batch: tuple[torch.Tensor, ...],
          warm_rows: torch.Tensor) -> tuple[float, float]:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=batch[0].device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        gen, dense = _losses(net, opts, *batch, warm_rows)
        loss = gen + opts.dense_weight * dense
    optimizer_step(net, loss, optimizer, sched, scaler)
    return float(gen.detach()), float(dense.detach())


def _validate(rec: HybridRecommender, cases: list, beam: int) -> dict[str, float]:
    """Valid NDCG@10 of the sampled users in every ranking mode (one beam search)."""
    ranked = rec.rank_modes([c.history for c in cases], 10, max(10, beam), [c.user_id for c in cases], RANK_MODES)
    targets = [c.target for c in cases]
    return {f"valid_ndcg10_{m}": ndcg_at_k(ranked[m], targets, 10) for m in RANK_MODES}


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any] | None,
          force: bool = False) -> dict[str, Any]:
    """Train the hybrid on the dataset's train split and write the model directory; return a summary."""
    opts = HybridOptions.from_dict(options)
    sids = check_sids_cover(dataset, sids, BACKBONE)
    check_output(output, force)
    vectors, source = aligned_item_vectors(opts.item_emb, sids.item_ids, BACKBONE)
    device = runtime.resolve_device(opts.device)
    runtime.seed_everything(opts.seed)
    vocab = TigerVocab.build(sids, sids.item_ids, opts.user_tokens)
    input_ids, mask, labels = _tensorize(dataset, vocab, opts)
    row = {iid: r for r, iid in enumerate(vocab.item_ids)}
    targets = torch.tensor([row[s.target] for s in training_samples(dataset, opts.max_history)], dtype=torch.long)
    n = input_ids.shape[0]
    if n == 0:
        raise InputError(dataset.path, "no training samples (every user has a single train item)")
    counts = item_counts(dataset)
    warm_rows = torch.tensor([r for r, iid in enumerate(vocab.item_ids) if counts.get(iid, 0) > 0],
                             dtype=torch.long, device=device)
    cold_ids = [iid for iid in vocab.item_ids if counts.get(iid, 0) == 0]
    lengths = mask.sum(1).clamp(min=1)
    t5 = build_model(vocab, opts)
    head = DenseHead(opts.d_model, vectors, train_adapter=opts.dense_loss != "cosine", item_ids=opts.dense_item_ids)
    net = _Net(t5, head).to(device)
    if device.type == "cpu":
        use_fast_dropout(t5)
    optimizer = make_optimizer(net, opts, device, lean=True)
    steps_per_epoch = math.ceil(n / opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    sched = make_scheduler(optimizer, opts, steps_per_epoch)
    amp_dtype, scaler = _amp(device, lean=True)
    average = make_average(net, opts.ema_decay)  # None unless --ema-decay
    valid = validation_sample(dataset, opts.eval_users, opts.seed)
    cold_rows = [row[i] for i in cold_ids]
    shuffle_gen = torch.Generator().manual_seed(opts.seed)
    best: dict[str, Any] = {"ndcg10": -1.0, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    bad_evals, t0, step, first_epoch, seconds_before = 0, time.time(), 0, 1, 0.0
    ckpt = Checkpointer(output, "train-rec", {"backbone": BACKBONE, **opts.checkpoint_params()},
                        inputs={"dataset": dataset.path, "sids": sids.path, "item_emb": opts.item_emb},
                        resume=bool((options or {}).get("resume")))
    live = {"modules": {"model": net}, "optimizers": {"adamw": optimizer}, "schedulers": {"lr": sched},
            "generators": {"shuffle": shuffle_gen}}
    if average is not None:
        live["modules"]["average"] = average
    saved = ckpt.load()
    if saved is not None:  # continue an interrupted run where it stopped
        saved.restore(**live)
        best, history, bad_evals, step, first_epoch, seconds_before = resumed_loop(saved, device)

    def snapshot(epoch: int) -> Snapshot:
        return loop_snapshot(epoch, step, live, best, history, bad_evals, seconds_before + time.time() - t0)

    with runtime.progress() as bar:
        task = bar.add_task("hybrid", total=total_steps, status="", completed=step)
        for epoch in range(first_epoch, opts.epochs + 1):
            net.train()
            sums, seen = [0.0, 0.0], 0
            for idx in _length_bucketed_batches(lengths, opts.batch_size, shuffle_gen):
                width = int(lengths[idx].max())
                batch = (input_ids[idx, :width].to(device), mask[idx, :width].to(device), labels[idx].to(device),
                         targets[idx].to(device))
                gen, dense = _step(net, opts, optimizer, sched, scaler, amp_dtype, batch, warm_rows)
                if average is not None:
                    average.update()
                sums = [sums[0] + gen * len(idx), sums[1] + dense * len(idx)]
                seen += len(idx)
                step += 1
                bar.update(task, advance=1, status=f"epoch {epoch} gen {sums[0] / seen:.3f} dense {sums[1] / seen:.3f}")
            gen_loss, d_loss = sums[0] / max(1, seen), sums[1] / max(1, seen)
            record: dict[str, Any] = {"epoch": epoch, "loss": gen_loss + opts.dense_weight * d_loss,
                                      "generation_loss": gen_loss, "dense_loss": d_loss}
            stop = False
            if epoch % opts.eval_every == 0 or epoch == opts.epochs:
                with averaged(average):  # the recommender's item vectors come from the averaged adapter too
                    rec = HybridRecommender(t5, head, vocab, cold_rows, opts, device)
                    record.update(_validate(rec, valid, opts.eval_beam))
                net.train()
                record["valid_ndcg10"] = record[f"valid_ndcg10_{opts.rank}"]
                improved = record["valid_ndcg10"] > best["ndcg10"]
                bad_evals = 0 if improved else bad_evals + 1
                stop = bad_evals >= opts.patience
                if improved:
                    with averaged(average):  # the weights validation saw
                        best = {"ndcg10": record["valid_ndcg10"], "epoch": epoch,
                                "state": copy.deepcopy(net.state_dict())}
                runtime.info(f"epoch {epoch}: generation loss {gen_loss:.4f}, dense loss {d_loss:.4f}, valid NDCG@10 "
                             + ", ".join(f"{m} {record[f'valid_ndcg10_{m}']:.4f}" for m in RANK_MODES)
                             + f" ({len(valid)} users)")
            record["seconds"] = round(seconds_before + time.time() - t0, 1)
            history.append(record)
            ckpt.epoch_done(epoch, lambda epoch=epoch: snapshot(epoch), last=stop or epoch == opts.epochs)
            if stop:
                break
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    summary: dict[str, Any] = {
        "backbone": BACKBONE, "output": str(output), "samples": n, "epochs_run": len(history),
        "best_epoch": best["epoch"], "best_valid_ndcg10_sample": best["ndcg10"], "selected_by": opts.rank,
        "eval_users": len(valid), "train_seconds": round(seconds_before + time.time() - t0, 1),
        "device": str(device), "parameters": sum(p.numel() for p in net.parameters()),
        "parameters_sha256": _param_digest(net), "vocab_size": vocab.size, "sid_levels": vocab.levels,
        "cold_items": len(cold_ids), "item_emb_dim": int(vectors.shape[1]), "history": history,
    }
    if head.id_residual is not None:
        summary["id_residual"] = _residual_stats(head, warm_rows, cold_rows)
    _save(net, dataset, sids, vocab, opts, source, cold_ids, output, force, summary)
    ckpt.finish()
    return summary


def _residual_stats(head: DenseHead, warm_rows: torch.Tensor, cold_rows: list[int]) -> dict[str, float]:
    """How far the saved per-item residuals moved: mean ``||b_i||`` of the warm rows against the mean
    ``||e_i + A e_i||`` (the content part), and the cold rows that are not zero (0 by the invariant)."""
    assert head.id_residual is not None
    with torch.no_grad():
        b, e, a = (t.detach().cpu() for t in (head.id_residual.weight, head.item_embeddings, head.adapter.weight))
        content = e + e @ a.T
        warm = warm_rows.cpu()
        return {"mean_norm_warm": float(b[warm].norm(dim=1).mean()) if len(warm) else 0.0,
                "mean_content_norm_warm": float(content[warm].norm(dim=1).mean()) if len(warm) else 0.0,
                "cold_rows_nonzero": int((b[cold_rows] != 0).any(dim=1).sum()) if cold_rows else 0}


def _save(net: _Net, dataset: Dataset, sids: SidTable, vocab: TigerVocab, opts: HybridOptions,
          source: dict[str, Any], cold_ids: list[str], output: str | Path, force: bool,
          summary: dict[str, Any]) -> None:
    params = asdict(opts)
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params},
                                 inputs={"dataset": dataset.path, "sids": sids.path, "item_emb": opts.item_emb})
    head_state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.head.state_dict().items()}
    with atomic_path(output, force, directory=True) as tmp:
        net.t5.save_pretrained(tmp)
        save_model_file(tmp / HEAD_FILE, HEAD_KIND, head_state,
                        {"d_model": opts.d_model, "item_dim": int(net.head.item_embeddings.shape[1]),
                         "dense_query": opts.dense_query, "dense_loss": opts.dense_loss,
                         "dense_item_ids": opts.dense_item_ids}, provenance)
        save_item_vectors(tmp, net.head.item_embeddings.cpu(), vocab.item_ids, source, provenance)
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, sids=sids,
                         vocab=vocab.layout(),
                         item_emb=source, cold_item_ids=cold_ids,
                         training={k: v for k, v in summary.items() if k != "output"})
