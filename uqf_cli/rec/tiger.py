"""TIGER backbone: a small T5 encoder-decoder that generates the next item's semantic ID.

TIGER (Rajput et al., 2023) writes each item as its SID tuple ``(c_1, ..., c_L)`` and trains a
sequence-to-sequence Transformer: the encoder reads the user's history as a flat token sequence
(the SID tokens of up to ``max_history`` past items, oldest first), the decoder emits the next item's
``L`` SID tokens. Items that share SID prefixes share parameters, which is the point of semantic IDs.

Model (TIGER's defaults): ``T5ForConditionalGeneration`` built from a ``T5Config`` (no pretrained
weights): 4 encoder + 4 decoder layers, ``d_model`` 128, 6 heads x ``d_kv`` 64, ``d_ff`` 1024, dropout
0.1, ReLU feed-forward, relative position buckets as in T5.

Vocabulary (laid out like the reference decoding script, so its trie applies unchanged)::

    0 = pad (also the decoder start token), 1 = eos,
    2 + sum(K_<l) + c = code c of level l,  then optionally N hashed user tokens.

* **Colliding SIDs.** Two items with the same SID tuple cannot be told apart by a decoder; as in
  TIGER an extra level is appended whose code is the item's rank among the items that share its
  tuple (0 for unique tuples), computed deterministically from the SID file's order.
* **User tokens** (``user_tokens`` N > 0, TIGER's hashing trick): the encoder input starts with token
  ``hash(user_id) mod N`` (sha1, stable across runs). Off by default: with leave-one-out splits on
  small data they mostly memorise users.

Training: cross-entropy on the ``L`` target tokens (teacher forcing, decoder input = start token +
target shifted right; no eos is needed because every SID has the same length), AdamW with linear
warmup then linear decay, gradient clipping at 1.0. Every ``eval_every`` epochs the model ranks a fixed
(seeded) sample of ``eval_users`` validation users with the constrained beam search
(:mod:`uqf_cli.rec.beam`) and the epoch with the best NDCG@10 is kept; training stops after
``patience`` evaluations without improvement. On a GPU the forward/backward runs under autocast
(bf16 when supported, else fp16 with a gradient scaler). ``engine="lean"`` (default) trains through
:mod:`uqf_cli.rec.t5_lean` (fused attention, same weights) with fused AdamW and, on CPUs with bf16
kernels, bf16 autocast (weights, optimizer state and loss stay fp32); ``engine="hf"`` is the plain
Hugging Face forward in fp32 on CPU. Under DDP the Hugging Face forward is used.

Budget (why the defaults): one epoch over Office (~38k samples, batch 256, mean 32 history tokens)
costs about 7 CPU-minutes with TIGER's shape on this 2-core CPU (one thread, measured), about 2 with
``preset="small"`` (2+2 layers, d_ff 512, 4 heads x 32: a quarter of the FLOPs per token); ``epochs``
20 with early stopping is for a GPU or a long CPU run. The learning rate (2e-3) is higher than
TIGER's long-schedule setting because the schedule is short. On CPU the dropout modules are swapped
for :class:`FastDropout` (same function, cheaper random bits).

Resume: the loop keeps a checkpoint ``<output>.ckpt.st`` (:mod:`uqf_cli.checkpoint`: weights, AdamW
state, schedule, shuffling and global RNGs, best weights, patience, curve) and ``resume`` continues
an interrupted run to the same final model as an uninterrupted one.

Scale-out: under ``torchrun --nproc_per_node N`` (environment ``WORLD_SIZE`` > 1) the model is wrapped
in ``torch.nn.parallel.DistributedDataParallel`` (gloo on CPU, nccl on CUDA); each rank takes an equal
slice of every (identically seeded) shuffled batch, gradients are all-reduced by DDP, rank 0 evaluates
and writes the model directory and broadcasts the early-stopping decision.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uqf_cli import runtime
from uqf_cli.checkpoint import Checkpointer, Snapshot
from uqf_cli.dataset import Dataset
from uqf_cli.errors import InputError, OptionError
from uqf_cli.io import SidTable, atomic_path, check_output, make_provenance
from uqf_cli.rec.base import check_sids_cover as base_check_sids_cover
from uqf_cli.rec.base import read_model_meta, read_model_sids, training_samples, write_model_meta
from uqf_cli.rec.beam import SidTrie, constrained_beam_search_t5
from uqf_cli.rec.t5_lean import lean_t5_loss

BACKBONE = "tiger"
PAD, EOS, FIRST_CODE_TOKEN = 0, 1, 2


# Model shapes by name. "tiger" is the paper's; "small" is for CPU budgets (about a quarter of the
# FLOPs per token: half the layers, half the feed-forward width, 4 heads x 32). Options given
# explicitly override the preset's values.
PRESETS: dict[str, dict[str, int]] = {
    "tiger": {"num_layers": 4, "num_decoder_layers": 4, "d_model": 128, "num_heads": 6, "d_kv": 64, "d_ff": 1024},
    "small": {"num_layers": 2, "num_decoder_layers": 2, "d_model": 128, "num_heads": 4, "d_kv": 32, "d_ff": 512},
}

# Training engines: "lean" (uqf_cli.rec.t5_lean's forward, bf16 autocast on CPUs with bf16 support,
# fused AdamW) and "hf" (the Hugging Face forward in fp32 on CPU, plain AdamW; the earlier path).
ENGINES = ("lean", "hf")


@dataclass
class TigerOptions:
    """Every option of the TIGER backbone, with its default."""

    preset: str = "tiger"
    max_history: int = 20
    user_tokens: int = 0
    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    eval_every: int = 1
    eval_users: int = 1000
    patience: int = 3
    beam_size: int = 20
    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout: float = 0.1
    seed: int = 0
    device: str = "auto"
    engine: str = "lean"

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> TigerOptions:
        """Known keys override defaults; ``None`` values and other backbones' keys are ignored."""
        known = {f.name: f.type for f in fields(cls)}
        given = {k: v for k, v in (options or {}).items() if k in known and v is not None}
        preset = str(given.get("preset", "tiger"))
        if preset not in PRESETS:
            raise OptionError("--preset", f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
        opts = cls(**{**PRESETS[preset], **given})
        opts.validate()
        return opts

    def validate(self) -> None:
        positive = ("max_history", "epochs", "batch_size", "eval_every", "patience", "beam_size", "num_layers",
                    "num_decoder_layers", "d_model", "num_heads", "d_kv", "d_ff")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise OptionError(f"--{name.replace('_', '-')}", "must be a positive integer")
        if self.user_tokens < 0:
            raise OptionError("--user-tokens", "must be >= 0")
        if not self.lr > 0:
            raise OptionError("--lr", "must be > 0")
        if not 0 <= self.dropout < 1:
            raise OptionError("--dropout", "must be in [0, 1)")
        if self.engine not in ENGINES:
            raise OptionError("--engine", f"unknown engine {self.engine!r} (choose from {', '.join(ENGINES)})")


# ------------------------------------------------------------------------------------------------
# Vocabulary
# ------------------------------------------------------------------------------------------------


@dataclass
class TigerVocab:
    """Token layout: item rows -> SID token ids, trie, user-token range."""

    item_ids: list[str]
    codes: np.ndarray  # [N, L'] (L' = L, or L + 1 with the collision level)
    codebook_sizes: list[int]
    offsets: list[int]
    user_tokens: int
    dedup_level: bool

    @classmethod
    def build(cls, sids: SidTable, item_ids: Sequence[str], user_tokens: int) -> TigerVocab:
        table = sids.as_dict()
        codes = np.asarray([table[i] for i in item_ids], dtype=np.int64)
        sizes = [int(k) for k in sids.codebook_sizes]
        rank = _collision_rank(codes)
        dedup = bool(rank.max() > 0)
        if dedup:
            codes = np.concatenate([codes, rank[:, None]], axis=1)
            sizes.append(int(rank.max()) + 1)
        offsets = list(FIRST_CODE_TOKEN + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int))
        return cls(list(item_ids), codes, sizes, [int(o) for o in offsets], user_tokens, dedup)

    @property
    def levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def user_offset(self) -> int:
        return FIRST_CODE_TOKEN + sum(self.codebook_sizes)

    @property
    def size(self) -> int:
        return self.user_offset + self.user_tokens

    def token_matrix(self) -> torch.Tensor:
        """``[N, L']`` token ids of every item's SID."""
        return torch.from_numpy(self.codes + np.asarray(self.offsets)[None, :])

    def user_token(self, user_id: str | None) -> int:
        digest = hashlib.sha1((user_id or "").encode()).digest()
        return self.user_offset + int.from_bytes(digest[:8], "big") % self.user_tokens

    def trie(self) -> SidTrie:
        return SidTrie.build(self.codes, self.codebook_sizes, self.offsets)


def _collision_rank(codes: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows have the same SID tuple."""
    seen: dict[tuple[int, ...], int] = {}
    rank = np.zeros(len(codes), dtype=np.int64)
    for r, row in enumerate(map(tuple, codes.tolist())):
        rank[r] = seen.get(row, 0)
        seen[row] = rank[r] + 1
    return rank


def encode_histories(vocab: TigerVocab, histories: Sequence[Sequence[int]], max_history: int,
                     user_ids: Sequence[str | None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder inputs: [user token] + SID tokens of the last ``max_history`` items; right-padded."""
    tok = vocab.token_matrix()
    seqs = []
    for n, hist in enumerate(histories):
        rows = list(hist)[-max_history:]
        ids = tok[rows].reshape(-1) if rows else torch.zeros(0, dtype=torch.long)
        if vocab.user_tokens:
            uid = user_ids[n] if user_ids is not None else None
            ids = torch.cat([torch.tensor([vocab.user_token(uid)]), ids])
        seqs.append(ids)
    width = max(1, max(len(s) for s in seqs))
    input_ids = torch.full((len(seqs), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for n, s in enumerate(seqs):
        input_ids[n, :len(s)] = s
        mask[n, :len(s)] = 1
    return input_ids, mask


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


def build_model(vocab: TigerVocab, opts: TigerOptions):
    """A randomly initialised T5 with TIGER's shape and our vocabulary."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=vocab.size, d_model=opts.d_model, d_kv=opts.d_kv, d_ff=opts.d_ff,
                   num_layers=opts.num_layers, num_decoder_layers=opts.num_decoder_layers, num_heads=opts.num_heads,
                   dropout_rate=opts.dropout, feed_forward_proj="relu", pad_token_id=PAD, eos_token_id=EOS,
                   decoder_start_token_id=PAD)
    return T5ForConditionalGeneration(cfg)


class FastDropout(torch.nn.Module):
    """Inverted dropout (zero with probability ``p``, scale the rest by ``1 / (1 - p)``), CPU-cheap masks.

    Same function as ``torch.nn.Dropout``; only where the random bits come from differs. On a CPU
    ``nn.Dropout`` draws one random number per element, and for this small model that costs several
    times the feed-forward matmul it follows (a ``[tokens, d_ff]`` mask per layer). Here one 64-bit
    draw gives four 16-bit uniform integers, and an element is dropped when its integer is below
    ``round(p * 65536)`` (so ``p`` is honoured to 1/65536). Deterministic given the torch seed.
    On GPUs the native dropout is used (it is fast there).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.threshold = round(self.p * 65536) - 32768  # int16 values are uniform on [-32768, 32767]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2 ** 63), None)  # 64 uniform bits each
        bits = words.view(torch.int16)[:n].view(x.shape)
        return x.masked_fill(bits < self.threshold, 0.0).mul_(1.0 / (1.0 - self.p))


def use_fast_dropout(model: torch.nn.Module) -> int:
    """Replace every ``nn.Dropout`` submodule by :class:`FastDropout` with the same ``p``; returns how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                swapped += 1
    return swapped


class TigerRecommender:
    """A trained TIGER model that ranks items with the constrained beam search."""

    backbone = BACKBONE
    uses_user_ids = False

    def __init__(self, model, vocab: TigerVocab, max_history: int, device: torch.device,
                 batch_size: int = 256) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.max_history = max_history
        self.device = device
        self.batch_size = batch_size
        self.trie = vocab.trie().to(device)
        self.row = {iid: r for r, iid in enumerate(vocab.item_ids)}
        self.uses_user_ids = vocab.user_tokens > 0

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None,
                  user_ids: Sequence[str] | None = None) -> list[list[str]]:
        """Top-``k`` item ids (best first) per history; ``beam_size`` defaults to ``k``."""
        beam = beam_size or k
        if k > beam:
            raise OptionError("--k", f"K={k} is larger than the beam size {beam}; a beam search returns at most "
                                     "beam-size items")
        rows = [[self.row[i] for i in h if i in self.row][-self.max_history:] for h in histories]
        # Batches of similar lengths: the encoder then spends little on padding.
        order = sorted(range(len(rows)), key=lambda n: len(rows[n]))
        out: list[list[str]] = [[] for _ in rows]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            uids = [user_ids[n] for n in chunk] if user_ids is not None else None
            input_ids, mask = encode_histories(self.vocab, [rows[n] for n in chunk], self.max_history, uids)
            res = constrained_beam_search_t5(self.model, input_ids.to(self.device), mask.to(self.device),
                                             self.trie, beam)
            for n, items in zip(chunk, res.items[:, :k].tolist(), strict=True):
                out[n] = [self.vocab.item_ids[r] for r in items if r >= 0]
        return out


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


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


def _schedule(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _validation_ndcg(rec: TigerRecommender, cases: list, k: int = 10) -> float:
    from uqf_cli.metrics import ndcg_at_k

    preds = rec.recommend([c.history for c in cases], k=k, beam_size=max(k, 20), user_ids=[c.user_id for c in cases])
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
        check_output(output, force)
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
    warmup = min(opts.warmup_steps, max(1, total_steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, warmup, total_steps))
    amp_dtype, scaler = _amp(device, lean)

    eval_gen = torch.Generator().manual_seed(opts.seed + 1)
    valid = dataset.eval_cases("valid")
    if len(valid) > opts.eval_users:
        pick = torch.randperm(len(valid), generator=eval_gen)[:opts.eval_users].sort().values.tolist()
        valid = [valid[i] for i in pick]
    shuffle_gen = torch.Generator().manual_seed(opts.seed)
    best: dict[str, Any] = {"ndcg10": -1.0, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    bad_evals, t0, step, first_epoch, seconds_before = 0, time.time(), 0, 1, 0.0
    ckpt = Checkpointer(output, "train-rec", {"backbone": BACKBONE, **{k: v for k, v in asdict(opts).items()
                                                                      if k != "device"}},
                        inputs={"dataset": dataset.path, "sids": sids.path}, resume=bool((options or {}).get("resume")))
    live = {"modules": {"model": model}, "optimizers": {"adamw": optimizer}, "schedulers": {"lr": sched},
            "generators": {"shuffle": shuffle_gen}}
    saved = ckpt.load()
    if saved is not None:  # continue an interrupted run: the next epoch sees exactly the state it would have seen
        saved.restore(**live)
        loop = saved.state
        best_tensors = {k[len("best."):]: v.to(device) for k, v in saved.extra_tensors().items()
                        if k.startswith("best.")}
        best = {"ndcg10": loop["best_ndcg10"], "epoch": loop["best_epoch"], "state": best_tensors or None}
        history, bad_evals, step = loop["history"], loop["bad_evals"], saved.step
        first_epoch, seconds_before = saved.epoch + 1, loop["train_seconds"]
        if scaler is not None and loop.get("scaler"):
            scaler.load_state_dict(loop["scaler"])

    def snapshot(epoch: int) -> Snapshot:
        loop_state = {"best_ndcg10": best["ndcg10"], "best_epoch": best["epoch"], "history": history,
                      "bad_evals": bad_evals, "train_seconds": seconds_before + time.time() - t0,
                      "scaler": scaler.state_dict() if scaler is not None else None}
        best_tensors = {f"best.{k}": v for k, v in (best["state"] or {}).items()}
        return Snapshot.capture(epoch, step=step, tensors=best_tensors, state=loop_state, **live)

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
                loss_sum += loss * len(idx)
                loss_n += len(idx)
                step += 1
                bar.update(task, advance=1, status=f"epoch {epoch} loss {loss_sum / max(1, loss_n):.3f}")
            record: dict[str, Any] = {"epoch": epoch, "loss": loss_sum / max(1, loss_n)}
            stop = improved = False
            if epoch % opts.eval_every == 0 or epoch == opts.epochs:
                if dist_info.main:
                    rec = TigerRecommender(model, vocab, opts.max_history, device)
                    record["valid_ndcg10"] = _validation_ndcg(rec, valid)
                    improved = record["valid_ndcg10"] > best["ndcg10"]
                    bad_evals = 0 if improved else bad_evals + 1
                    stop = bad_evals >= opts.patience
                    runtime.info(f"epoch {epoch}: loss {record['loss']:.4f}, valid NDCG@10 "
                                 f"{record['valid_ndcg10']:.4f} ({len(valid)} users)")
                # Rank 0 decides; every rank keeps its own copy of the best state (DDP keeps them equal).
                improved, stop = _broadcast_flags((improved, stop), dist_info)
                if improved:
                    best = {"ndcg10": record.get("valid_ndcg10", best["ndcg10"]), "epoch": epoch,
                            "state": copy.deepcopy(model.state_dict())}
            history.append(record)
            if dist_info.main:
                ckpt.epoch_done(epoch, lambda epoch=epoch: snapshot(epoch), last=stop or epoch == opts.epochs)
            if stop:
                break
    train_seconds = seconds_before + time.time() - t0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    summary: dict[str, Any] = {
        "backbone": BACKBONE, "output": str(output), "samples": n, "epochs_run": len(history),
        "best_epoch": best["epoch"], "best_valid_ndcg10_sample": best["ndcg10"], "eval_users": len(valid),
        "train_seconds": round(train_seconds, 1), "device": str(device), "world_size": dist_info.world,
        "parameters": sum(p.numel() for p in model.parameters()), "parameters_sha256": _param_digest(model),
        "vocab_size": vocab.size, "sid_levels": vocab.levels, "dedup_level": vocab.dedup_level, "history": history,
    }
    if dist_info.main:
        _save(model, dataset, sids, vocab, opts, output, force, summary)
        ckpt.finish()
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
    return summary


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
    return float(loss.detach())


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


def _save(model, dataset: Dataset, sids: SidTable, vocab: TigerVocab, opts: TigerOptions, output: str | Path,
          force: bool, summary: dict[str, Any]) -> None:
    params = asdict(opts)
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params},
                                 inputs={"dataset": dataset.path, "sids": sids.path})
    with atomic_path(output, force, directory=True) as tmp:
        model.save_pretrained(tmp)
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, sids=sids,
                         vocab={"offsets": vocab.offsets, "codebook_sizes": vocab.codebook_sizes,
                                "user_tokens": vocab.user_tokens, "dedup_level": vocab.dedup_level,
                                "size": vocab.size},
                         training={k: v for k, v in summary.items() if k not in ("output",)})


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def load(model_dir: str | Path, device: str | torch.device = "cpu") -> TigerRecommender:
    """Load a TIGER model directory written by :func:`train`."""
    from safetensors import SafetensorError
    from transformers import T5ForConditionalGeneration

    meta = read_model_meta(model_dir)
    if meta.get("backbone") != BACKBONE:
        raise InputError(model_dir, f"model directory holds a {meta.get('backbone')!r} model, not {BACKBONE!r}")
    sids = read_model_sids(model_dir)
    if sids.content_hash() != meta.get("sid_hash"):
        raise InputError(Path(model_dir) / "sids.jsonl", "SID copy does not match the hash in uqf_model.json")
    opts = TigerOptions.from_dict(meta.get("options", {}))
    vocab = TigerVocab.build(sids, sids.item_ids, opts.user_tokens)
    if vocab.offsets != meta.get("vocab", {}).get("offsets"):
        raise InputError(model_dir, "vocabulary layout differs from the one the model was trained with")
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(device)
    try:
        model = T5ForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).to(dev)
    except (OSError, ValueError, SafetensorError) as e:
        raise InputError(model_dir, f"cannot load the T5 weights ({e})") from e
    return TigerRecommender(model, vocab, opts.max_history, dev)

