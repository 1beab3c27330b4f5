"""TIGER training: teacher-forced cross-entropy on the SID tokens, early stopping on a validation
sample ranked by the constrained beam search, resumable checkpoints, DDP under ``torchrun``."""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, depth_label, make_provenance
from uqf_cli.files.checkpoint import Checkpointer, Snapshot
from uqf_cli.rec.base import check_sids_cover as base_check_sids_cover
from uqf_cli.rec.base import training_samples, write_model_meta
from uqf_cli.rec.schedule import lr_multiplier
from uqf_cli.rec.tiger.model import build_model, use_fast_dropout
from uqf_cli.rec.tiger.options import BACKBONE, TigerOptions
from uqf_cli.rec.tiger.recommender import TigerRecommender
from uqf_cli.rec.tiger.t5_lean import lean_t5_loss
from uqf_cli.rec.tiger.vocab import TigerVocab, encode_histories
from uqf_cli.rec.weight_average import averaged, make_average


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size())


def check_sids_cover(dataset: Dataset, sids: SidTable | None) -> SidTable:
    """The SIDs must give every dataset item a code tuple (see :func:`uqf_cli.rec.base.check_sids_cover`)."""
    return base_check_sids_cover(dataset, sids, BACKBONE)


def _tensorize(dataset: Dataset, vocab: TigerVocab, opts: TigerOptions) -> tuple[torch.Tensor, ...]:
    samples = training_samples(dataset, opts.max_history)
    row = {iid: r for r, iid in enumerate(vocab.item_ids)}
    hist = [[row[i] for i in s.history] for s in samples]
    input_ids, mask = encode_histories(vocab, hist, opts.max_history, [s.user_id for s in samples])
    labels = vocab.token_matrix()[torch.tensor([row[s.target] for s in samples])]
    return input_ids, mask, labels


def _length_bucketed_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled batches of samples with similar history lengths.

    Why: most histories are much shorter than ``max_history`` (Office: ~5 items on average against
    20), and a batch is padded to its longest sample, so random batches would spend most encoder
    FLOPs on padding. Samples are sorted by length with random tie-breaking, cut into batches, and
    the batch order is shuffled; with the same generator state every rank builds the same batches.
    """
    noise = torch.rand(len(lengths), generator=gen)
    order = torch.argsort(lengths.double() + noise.double())
    batches = list(torch.split(order, batch_size))
    perm = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in perm]


def make_scheduler(optimizer: torch.optim.Optimizer, opts: TigerOptions, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup and decay planned over ``--decay-epochs`` (at most ``--epochs``), then the ``--min-lr-ratio`` floor
    for the epochs early stopping still allows."""
    total = steps_per_epoch * min(opts.decay_epochs, opts.epochs)
    warmup = warmup_steps(opts, total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, warmup, total, opts.lr_schedule, opts.min_lr_ratio))


def warmup_steps(opts: TigerOptions, total_steps: int) -> int:
    """``--warmup-ratio`` of the planned steps when given, else ``--warmup-steps`` capped at a tenth of them."""
    if opts.warmup_ratio > 0:
        return max(1, math.ceil(opts.warmup_ratio * total_steps))
    return min(opts.warmup_steps, max(1, total_steps // 10))


def _param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def validation_sample(dataset: Dataset, users: int, seed: int) -> list:
    """The valid cases early stopping ranks: all of them (``users`` 0 or at least their number), or a sample of
    ``users`` drawn with ``seed + 1`` (kept in dataset order)."""
    valid = dataset.eval_cases("valid")
    if 0 < users < len(valid):
        pick = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed + 1))[:users]
        valid = [valid[i] for i in pick.sort().values.tolist()]
    return valid


def _validation_ndcg(rec: TigerRecommender, cases: list, beam: int, k: int = 10) -> float:
    from uqf_cli.rec.ranking import ndcg_at_k

    preds = rec.recommend([c.history for c in cases], k=k, beam_size=max(k, beam), user_ids=[c.user_id for c in cases])
    return ndcg_at_k(preds, [c.target for c in cases], k)


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any] | None,
          force: bool = False) -> dict[str, Any]:
    """Train TIGER on the dataset's train split and write the model directory; return a summary."""
    opts = TigerOptions.from_dict(options)
    sids = check_sids_cover(dataset, sids)
    device = runtime.resolve_device(opts.device)
    dist_info = _init_distributed(device)
    if dist_info.world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if dist_info.main:
        check_output(output, force, "model")
    runtime.seed_everything(opts.seed)
    vocab = TigerVocab.build(sids, sids.item_ids, opts.user_tokens)
    input_ids, mask, labels = _tensorize(dataset, vocab, opts)
    n = input_ids.shape[0]
    lengths = mask.sum(1).clamp(min=1)
    if n == 0:
        raise InputError(dataset.path, "no training samples (every user has a single train item)")
    model = build_model(vocab, opts).to(device)
    if device.type == "cpu":
        use_fast_dropout(model)  # same dropout, cheaper random bits (see FastDropout)
    net: torch.nn.Module = model
    if dist_info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    lean = opts.engine == "lean" and dist_info.world == 1  # DDP's gradient hooks need the module's own forward
    optimizer = make_optimizer(model, opts, device, lean)
    steps_per_epoch = math.ceil(n / opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    sched = make_scheduler(optimizer, opts, steps_per_epoch)
    amp_dtype, scaler = _amp(device, lean)
    average = make_average(model, opts.ema_decay)  # None unless --ema-decay

    valid = validation_sample(dataset, opts.eval_users, opts.seed)
    shuffle_gen = torch.Generator().manual_seed(opts.seed)
    best: dict[str, Any] = {"ndcg10": -1.0, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    bad_evals, t0, step, first_epoch, seconds_before = 0, time.time(), 0, 1, 0.0
    cpu0, cpu_before = time.process_time(), 0.0  # CPU seconds of all this process's threads: robust to a busy machine
    ckpt = Checkpointer(output, "train-rec", {"backbone": BACKBONE, **opts.params()},
                        inputs={"dataset": dataset.path, "sids": sids.path}, resume=bool((options or {}).get("resume")))
    live = {"modules": {"model": model}, "optimizers": {"adamw": optimizer}, "schedulers": {"lr": sched},
            "generators": {"shuffle": shuffle_gen}}
    if average is not None:
        live["modules"]["average"] = average
    saved = ckpt.load()
    if saved is not None:  # continue an interrupted run: the next epoch sees exactly the state it would have seen
        saved.restore(**live)
        best, history, bad_evals, step, first_epoch, seconds_before = resumed_loop(saved, device)
        loop = saved.state
        cpu_before = loop.get("train_cpu_seconds", 0.0)
        if scaler is not None and loop.get("scaler"):
            scaler.load_state_dict(loop["scaler"])

    def snapshot(epoch: int) -> Snapshot:
        return loop_snapshot(epoch, step, live, best, history, bad_evals, seconds_before + time.time() - t0,
                             train_cpu_seconds=cpu_before + time.process_time() - cpu0,
                             scaler=scaler.state_dict() if scaler is not None else None)

    stop = False
    with runtime.progress() as bar:
        task = bar.add_task("tiger", total=total_steps, status="", completed=step)
        for epoch in range(first_epoch, opts.epochs + 1):
            net.train()
            loss_sum, loss_n = 0.0, 0
            for idx in _length_bucketed_batches(lengths, opts.batch_size, shuffle_gen):
                idx = idx[dist_info.rank::dist_info.world]  # this rank's equal slice of the global batch
                width = int(lengths[idx].max())
                loss = _step(net, optimizer, sched, scaler, amp_dtype, input_ids[idx, :width].to(device),
                             mask[idx, :width].to(device), labels[idx].to(device), lean)
                if average is not None:
                    average.update()
                loss_sum += loss * len(idx)
                loss_n += len(idx)
                step += 1
                bar.update(task, advance=1, status=f"epoch {epoch} loss {loss_sum / max(1, loss_n):.3f}")
            record: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / max(1, loss_n)}
            stop = improved = False
            if epoch % opts.eval_every == 0 or epoch == opts.epochs:
                if dist_info.main:
                    rec = TigerRecommender(model, vocab, opts.max_history, device)
                    with averaged(average):
                        record["valid_ndcg10"] = _validation_ndcg(rec, valid, opts.eval_beam)
                    improved = record["valid_ndcg10"] > best["ndcg10"]
                    bad_evals = 0 if improved else bad_evals + 1
                    stop = bad_evals >= opts.patience
                    runtime.info(f"epoch {epoch}: loss {record['loss']:.4f}, valid NDCG@10 "
                                 f"{record['valid_ndcg10']:.4f} ({len(valid)} users)")
                # Rank 0 decides; every rank keeps its own copy of the best state (DDP keeps them equal).
                improved, stop = _broadcast_flags((improved, stop), dist_info)
                if improved:
                    with averaged(average):  # the weights validation saw
                        best = {"ndcg10": record.get("valid_ndcg10", best["ndcg10"]), "epoch": epoch,
                                "state": copy.deepcopy(model.state_dict())}
            record["seconds"] = round(seconds_before + time.time() - t0, 1)  # training + validation so far
            record["cpu_seconds"] = round(cpu_before + time.process_time() - cpu0, 1)
            history.append(record)
            if dist_info.main:
                ckpt.epoch_done(epoch, lambda epoch=epoch: snapshot(epoch), last=stop or epoch == opts.epochs)
            if stop:
                break
    train_seconds = seconds_before + time.time() - t0
    train_cpu_seconds = cpu_before + time.process_time() - cpu0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    summary: dict[str, Any] = {
        "backbone": BACKBONE, "output": str(output), "samples": n, "epochs_run": len(history),
        "best_epoch": best["epoch"], "best_valid_ndcg10_sample": best["ndcg10"], "eval_users": len(valid),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu_seconds, 1), "device": str(device), "world_size": dist_info.world,
        "parameters": sum(p.numel() for p in model.parameters()), "parameters_sha256": _param_digest(model),
        "vocab_size": vocab.size, "sid_depth": sid_depth(sids, vocab), "history": history,
    }
    if dist_info.main:
        _save(model, dataset, sids, vocab, opts, output, force, summary)
        ckpt.finish()
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return summary


def resumed_loop(saved: Snapshot, device: torch.device) -> tuple[dict[str, Any], list, int, int, int, float]:
    """Where an interrupted run goes on (its model and optimizer restored already): the best evaluation so far
    (its weights on ``device``), the history, the evaluations without improvement, the step, the next epoch and
    the seconds trained."""
    loop = saved.state
    best_tensors = {k[len("best."):]: v.to(device) for k, v in saved.extra_tensors().items() if k.startswith("best.")}
    best = {"ndcg10": loop["best_ndcg10"], "epoch": loop["best_epoch"], "state": best_tensors or None}
    return best, loop["history"], loop["bad_evals"], saved.step, saved.epoch + 1, loop["train_seconds"]


def loop_snapshot(epoch: int, step: int, live: dict[str, Any], best: dict[str, Any], history: list, bad_evals: int,
                  train_seconds: float, **more: Any) -> Snapshot:
    """The checkpoint of a run after ``epoch``: ``live`` (model, optimizer, ...), the loop's state (``more`` added)
    and the best evaluation's weights; :func:`resumed_loop` reads it back."""
    state = {"best_ndcg10": best["ndcg10"], "best_epoch": best["epoch"], "history": history, "bad_evals": bad_evals,
             "train_seconds": train_seconds, **more}
    best_tensors = {f"best.{k}": v for k, v in (best["state"] or {}).items()}
    return Snapshot.capture(epoch, step=step, tensors=best_tensors, state=state, **live)


def make_optimizer(model: torch.nn.Module, opts: TigerOptions, device: torch.device, lean: bool):
    """AdamW; the lean engine uses the fused kernel on CPU (one pass over all parameters)."""
    return torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay,
                             fused=True if lean and device.type == "cpu" else None)


def _amp(device: torch.device, lean: bool = False):
    """Autocast dtype and gradient scaler: bf16 or fp16 on CUDA; bf16 on a CPU with bf16 kernels (lean only)."""
    if device.type == "cpu" and lean and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16, None
    if device.type != "cuda":
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _step(net, optimizer, sched, scaler, amp_dtype, input_ids, mask, labels, lean: bool = False) -> float:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=input_ids.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        if lean:
            loss = lean_t5_loss(net, input_ids, mask, labels)
        else:
            loss = net(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    optimizer_step(net, loss, optimizer, sched, scaler)
    return float(loss.detach())


def optimizer_step(net: torch.nn.Module, loss: torch.Tensor, optimizer, sched, scaler) -> None:
    """Backward, gradient norm clipped to 1, optimizer step (through ``scaler`` where fp16 needs one), schedule."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
    sched.step()


def _broadcast_flags(flags: tuple[bool, ...], dist_info: _Dist) -> tuple[bool, ...]:
    """Rank 0 decides (best epoch, early stopping); every rank follows."""
    if dist_info.world <= 1:
        return flags
    import torch.distributed as dist

    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=0)
    return tuple(bool(v) for v in t.tolist())


def sid_depth(sids: SidTable, vocab: TigerVocab) -> str:
    """The generated SIDs' depth: the file's semantic levels, plus a dedup code from quantize or from TIGER."""
    return depth_label(sids.semantic_levels, sids.dedup_level or vocab.dedup_level)


def _save(model, dataset: Dataset, sids: SidTable, vocab: TigerVocab, opts: TigerOptions, output: str | Path,
          force: bool, summary: dict[str, Any]) -> None:
    params = asdict(opts)
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params},
                                 inputs={"dataset": dataset.path, "sids": sids.path})
    with atomic_path(output, force, directory=True) as tmp:
        model.save_pretrained(tmp)
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, sids=sids,
                         vocab=vocab.layout(),
                         training={k: v for k, v in summary.items() if k not in ("output",)})


def recorded_curve(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch records ``{epoch, loss, valid_ndcg10, ...}`` a model directory's metadata holds (``training.
    history``, written by :func:`_save`): what ``--plot`` draws."""
    return (meta.get("training") or {}).get("history") or []
