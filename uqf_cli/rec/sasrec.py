"""SASRec baseline (``--backbone sasrec``): causal self-attention over item-id histories (Kang & McAuley, 2018).

It needs no SIDs, so it tells whether the SIDs help at all over plain item ids. Trained with
cross-entropy over all items; the best epoch by valid NDCG@10 is kept. Options:
:class:`SasRecOptions`. Design and files: ``docs/train-rec.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uqf_cli.core import runtime
from uqf_cli.core.errors import InputError, OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, load_model_file, make_provenance, save_model_file
from uqf_cli.files.checkpoint import Checkpointer, Snapshot
from uqf_cli.rec import options as shared
from uqf_cli.rec.base import history_rows, read_model_meta, write_model_meta
from uqf_cli.rec.options import BackboneOptions, option_values
from uqf_cli.rec.registry import Backbone

BACKBONE = "sasrec"
WEIGHTS_FILE = "model.safetensors"
MODEL_KIND = "sasrec"

_ARCH_KEYS = ("hidden", "blocks", "heads", "dropout", "max_history")


@dataclass
class SasRecOptions(BackboneOptions):
    """Every option of the SASRec backbone, with its default (``--d-model`` sets ``hidden``, ``--num-layers``
    ``blocks``)."""

    hidden: int = shared.d_model(64)
    blocks: int = shared.num_layers(2)
    heads: int = 1
    dropout: float = shared.dropout(0.2)
    max_history: int = shared.max_history(20)
    epochs: int = shared.epochs(200, ge=1)
    batch_size: int = shared.batch_size(128)
    lr: float = shared.lr(1e-3)
    weight_decay: float = shared.weight_decay(0.0)
    patience: int = shared.patience(10, ge=1)
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1024
    eval_every: int = shared.eval_every(1)

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> SasRecOptions:
        """Known keys (``d_model`` and ``num_layers`` too) override defaults; ``None`` values and other keys are
        ignored; a fraction of an epoch rounds up."""
        opts = cls(**option_values(cls, options))
        opts.epochs = math.ceil(float(opts.epochs))
        opts.validate()
        return opts

    def check(self) -> None:
        for key in ("heads", "eval_batch_size"):  # library-only: no flag declares their range
            if int(getattr(self, key)) < 1:
                raise OptionError(f"--{key.replace('_', '-')}", f"must be >= 1, got {getattr(self, key)}")
        if int(self.hidden) % int(self.heads):
            raise OptionError("--heads", f"hidden size {self.hidden} is not divisible by {self.heads} heads")


class SasRec(nn.Module):
    """Item + position embeddings, causal pre-LN Transformer blocks, dot-product item scores."""

    def __init__(self, n_items: int, hidden: int, blocks: int, heads: int, dropout: float, max_history: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.items = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.positions = nn.Embedding(max_history, hidden)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=hidden, dropout=dropout,
                                           activation="relu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        nn.init.normal_(self.items.weight, std=hidden ** -0.5)
        nn.init.normal_(self.positions.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def hidden_states(self, seqs: torch.Tensor) -> torch.Tensor:
        """``seqs`` [B, T] of item indices (0 = padding, left-padded) -> hidden states [B, T, d]."""
        t = seqs.shape[1]
        pos = torch.arange(t, device=seqs.device)
        x = self.items(seqs) * math.sqrt(self.hidden) + self.positions(pos)
        x = self.dropout(x) * (seqs > 0).unsqueeze(-1)
        x = self.encoder(x, mask=self._attention_mask(seqs))
        return self.norm(x)

    def _attention_mask(self, seqs: torch.Tensor) -> torch.Tensor:
        """[B * heads, T, T] boolean, True = blocked: future positions and padding keys (each position
        may always see itself, so a padding row is never fully blocked, which would give NaN)."""
        t = seqs.shape[1]
        future = torch.triu(torch.ones((t, t), dtype=torch.bool, device=seqs.device), diagonal=1)
        eye = torch.eye(t, dtype=torch.bool, device=seqs.device)
        blocked = future.unsqueeze(0) | ((seqs == 0).unsqueeze(1) & ~eye.unsqueeze(0))
        heads = self.encoder.layers[0].self_attn.num_heads
        return blocked.repeat_interleave(heads, dim=0)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item (padding row excluded): [..., n_items]."""
        return h @ self.items.weight[1:].T


def _windows(seq: list[int], max_len: int) -> list[list[int]]:
    """Cut a sequence into windows of at most ``max_len + 1`` items from the end, so that each
    position after the first is a target exactly once, with up to ``max_len`` items before it."""
    out = []
    end = len(seq)
    while end > 1:
        start = max(0, end - max_len - 1)
        out.append(seq[start:end])
        end = start + 1
        if start == 0:
            break
    return out


def _training_tensors(dataset: Dataset, index: dict[str, int], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded inputs and next-item targets [W, max_len] (target 0 = no loss)."""
    rows = []
    for seq in dataset.train_sequences().values():
        rows.extend(_windows([index[i] for i in seq], max_len))
    inputs = torch.zeros((len(rows), max_len), dtype=torch.long)
    targets = torch.zeros((len(rows), max_len), dtype=torch.long)
    for r, w in enumerate(rows):
        n = len(w) - 1
        inputs[r, max_len - n:] = torch.tensor(w[:-1])
        targets[r, max_len - n:] = torch.tensor(w[1:])
    return inputs, targets


def _left_pad(histories: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    out = torch.zeros((len(histories), max_len), dtype=torch.long)
    for r, h in enumerate(histories):
        h = list(h)[-max_len:]
        if h:
            out[r, max_len - len(h):] = torch.tensor(h)
    return out


def _top_k(model: SasRec, histories: Sequence[Sequence[int]], k: int, max_len: int, device: torch.device,
           batch: int) -> torch.Tensor:
    """Top-k item rows (0-based, into the item list) for each history."""
    return _top_k_scored(model, histories, k, max_len, device, batch)[0]


@torch.no_grad()
def _top_k_scored(model: SasRec, histories: Sequence[Sequence[int]], k: int, max_len: int, device: torch.device,
                  batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k item rows (0-based, into the item list) for each history, and their logits."""
    model.eval()
    rows, values = [], []
    for start in range(0, len(histories), batch):
        seqs = _left_pad(histories[start:start + batch], max_len).to(device)
        h = model.hidden_states(seqs)[:, -1]
        top = model.scores(h).topk(k, dim=-1)
        rows.append(top.indices.cpu())
        values.append(top.values.float().cpu())
    if not rows:
        return torch.zeros((0, k), dtype=torch.long), torch.zeros((0, k))
    return torch.cat(rows), torch.cat(values)


def _valid_ndcg10(model: SasRec, dataset: Dataset, index: dict[str, int], opts: SasRecOptions,
                  device: torch.device) -> float:
    cases = dataset.eval_cases("valid")
    if not cases:
        return 0.0
    k = min(10, len(index))
    top = _top_k(model, [[index[i] for i in c.history] for c in cases], k, int(opts.max_history), device,
                 int(opts.eval_batch_size))
    targets = torch.tensor([index[c.target] - 1 for c in cases]).unsqueeze(1)
    hit = (top == targets).float()
    gains = hit / torch.log2(torch.arange(2, k + 2, dtype=torch.float)).unsqueeze(0)
    return float(gains.sum() / len(cases))


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any],
          force: bool = False) -> dict[str, Any]:
    """Train SASRec with full-softmax cross-entropy, select the best epoch on valid NDCG@10, save.

    A checkpoint ``<output>.ckpt.st`` is kept while training; ``options["resume"]`` continues from it."""
    output = Path(output)
    check_output(output, force, "model")
    opts = SasRecOptions.from_dict(options)
    device = runtime.resolve_device(str(opts.device))
    seed = int(opts.seed)
    gen = runtime.seed_everything(seed)
    index = {iid: k + 1 for k, iid in enumerate(dataset.item_ids)}  # 0 = padding
    max_len = int(opts.max_history)
    inputs, targets = _training_tensors(dataset, index, max_len)
    if len(inputs) == 0:
        raise InputError(dataset.path, "no training sequence has two items; SASRec has nothing to learn")
    model = SasRec(len(index), int(opts.hidden), int(opts.blocks), int(opts.heads), float(opts.dropout),
                   int(opts.max_history)).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=float(opts.lr), weight_decay=float(opts.weight_decay))
    best = (-1.0, 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
    t0, bs, history, stale = time.perf_counter(), int(opts.batch_size), [], 0
    ckpt = Checkpointer(output, "train-rec", {"backbone": BACKBONE, **opts.params()},
                        _dataset_inputs(dataset), resume=bool((options or {}).get("resume")))
    live = {"modules": {"sasrec": model}, "optimizers": {"adam": optim}, "generators": {"order": gen}}
    first_epoch, saved = 1, ckpt.load()
    if saved is not None:
        saved.restore(**live)
        best_state = {k[len("best."):]: v.to(device) for k, v in saved.extra_tensors().items()}
        best = (float(saved.state["best_ndcg"]), int(saved.state["best_epoch"]), best_state)
        history, stale, first_epoch = list(saved.state["history"]), int(saved.state["stale"]), saved.epoch + 1

    def snapshot() -> Snapshot:
        return Snapshot.capture(epoch, **live, tensors={f"best.{k}": v for k, v in best[2].items()},
                                state={"best_ndcg": best[0], "best_epoch": best[1], "history": history,
                                       "stale": stale})

    with runtime.progress() as bar:
        task = bar.add_task("sasrec: training", total=int(opts.epochs), completed=first_epoch - 1, status="")
        for epoch in range(first_epoch, int(opts.epochs) + 1):
            model.train()
            order = torch.randperm(len(inputs), generator=gen)
            total, count = 0.0, 0
            for start in range(0, len(order), bs):
                rows = order[start:start + bs]
                seqs, tgt = inputs[rows].to(device), targets[rows].to(device)
                logits = model.scores(model.hidden_states(seqs))
                loss = nn.functional.cross_entropy(logits[tgt > 0], tgt[tgt > 0] - 1)
                optim.zero_grad()
                loss.backward()
                optim.step()
                total, count = total + float(loss.detach()) * len(rows), count + len(rows)
            bar.update(task, completed=epoch, status=f"loss {total / count:.3f}")
            if epoch % int(opts.eval_every) and epoch != int(opts.epochs):
                ckpt.epoch_done(epoch, snapshot, last=False)
                continue
            ndcg = _valid_ndcg10(model, dataset, index, opts, device)
            history.append({"epoch": epoch, "loss": total / count, "valid_ndcg@10": ndcg})
            if ndcg > best[0]:
                best = (ndcg, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
            bar.update(task, status=f"loss {total / count:.3f} valid NDCG@10 {ndcg:.4f}")
            if stale >= int(opts.patience):
                break  # `patience` evaluations without improvement
            ckpt.epoch_done(epoch, snapshot, last=epoch == int(opts.epochs))
    model.load_state_dict(best[2])
    summary = {
        "backbone": BACKBONE,
        "output": str(output),
        "epochs_run": history[-1]["epoch"],
        "best_epoch": best[1],
        "valid_ndcg@10": best[0],
        "train_windows": len(inputs),
        "final_loss": history[-1]["loss"],
        "device": str(device),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _save(model, dataset, opts, summary, history, output, force)
    ckpt.finish()
    return summary


def _dataset_inputs(dataset: Dataset) -> dict[str, Path]:
    if dataset.path is None:
        return {}
    return {"dataset_items": dataset.path / "items.jsonl", "dataset_sequences": dataset.path / "sequences.jsonl"}


def _save(model: SasRec, dataset: Dataset, opts: SasRecOptions, summary: dict[str, Any],
          history: list[dict[str, Any]], output: Path, force: bool) -> None:
    params = opts.params()
    inputs = {}
    if dataset.path is not None:
        inputs = {"dataset_items": dataset.path / "items.jsonl", "dataset_sequences": dataset.path / "sequences.jsonl"}
    provenance = make_provenance("train-rec", {"backbone": BACKBONE, **params}, inputs)
    config = {**{k: getattr(opts, k) for k in _ARCH_KEYS}, "item_ids": list(dataset.item_ids)}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(output, force, directory=True) as tmp:
        save_model_file(tmp / WEIGHTS_FILE, MODEL_KIND, state, config, provenance,
                        dataset_fingerprint=dataset.fingerprint)
        write_model_meta(tmp, BACKBONE, dataset, params, provenance, None,
                         train_summary={k: summary[k] for k in ("epochs_run", "best_epoch", "valid_ndcg@10")},
                         epochs=history)


class SasRecRecommender:
    """A trained SASRec that ranks all items for each history."""

    backbone = BACKBONE
    score_name = "logit"

    def __init__(self, model: SasRec, item_ids: list[str], max_history: int, device: torch.device,
                 batch: int = 1024) -> None:
        self.model = model.to(device).eval()
        self.item_ids = item_ids
        self.index = {iid: k + 1 for k, iid in enumerate(item_ids)}
        self.max_history = max_history
        self.device = device
        self.batch = batch

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        """Top-``k`` items by score over the whole catalogue (``beam_size`` is unused: no beams here)."""
        return [[iid for iid, _ in ranked] for ranked in self.recommend_scored(histories, k)]

    def recommend_scored(self, histories: Sequence[Sequence[str]], k: int,
                         beam_size: int | None = None) -> list[list[tuple[str, float]]]:
        """Like :meth:`recommend`, with each item's logit (the dot product of the last hidden state and the item)."""
        rows = history_rows(histories, self.index, "SASRec")
        k = min(int(k), len(self.item_ids))
        top, logits = _top_k_scored(self.model, rows, k, self.max_history, self.device, self.batch)
        return [[(self.item_ids[j], float(v)) for j, v in zip(r, vs, strict=True)]
                for r, vs in zip(top.tolist(), logits.tolist(), strict=True)]


def load(model_dir: str | Path, device: str | torch.device = "auto") -> SasRecRecommender:
    """Load a SASRec model directory for ranking."""
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir, BACKBONE)
    state, config, _ = load_model_file(model_dir / WEIGHTS_FILE, MODEL_KIND)
    item_ids = config.get("item_ids")
    if not isinstance(item_ids, list) or not item_ids:
        raise InputError(model_dir / WEIGHTS_FILE, "config has no item_ids list")
    model = SasRec(len(item_ids), int(config["hidden"]), int(config["blocks"]), int(config["heads"]),
                   float(config["dropout"]), int(config["max_history"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(model_dir / WEIGHTS_FILE, f"weights do not match the config ({str(e).splitlines()[0]})") from e
    dev = device if isinstance(device, torch.device) else runtime.resolve_device(str(device))
    batch = int(meta.get("options", {}).get("eval_batch_size", SasRecOptions.eval_batch_size))
    return SasRecRecommender(model, item_ids, int(config["max_history"]), dev, batch)


def recorded_curve(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch records of a model directory's metadata (``epochs``, written by :func:`_save`), with the
    validation NDCG under the name ``--plot`` reads (``valid_ndcg10``)."""
    return [{**{k: v for k, v in r.items() if k != "valid_ndcg@10"}, "valid_ndcg10": r.get("valid_ndcg@10")}
            for r in meta.get("epochs") or []]


SPEC = Backbone(BACKBONE, SasRecOptions, train, load, curve=recorded_curve)
