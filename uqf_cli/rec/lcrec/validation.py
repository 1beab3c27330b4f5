"""Validation during LC-Rec training: NDCG@10 on a seeded sample of validation users every
``eval_steps`` optimizer steps, early stopping after ``patience`` evaluations without improvement
(with ``--decay-epochs``, only evaluations after the decay count: the high learning rate of the decay's
first part moves the ranking too much to judge it), and the best trainable weights (LoRA + SID rows, a few
MB) kept to be written at the end.

Ranking is the constrained beam search of :class:`~uqf_cli.rec.lcrec.recommender.LcRecRecommender`
run on the model being trained (peft, not merged), under the training's autocast. For ``--resume``
the best weights and the evaluation history are written into every Trainer checkpoint folder.
"""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import torch

from uqf_cli.core import runtime
from uqf_cli.data.dataset import Dataset
from uqf_cli.rec.ranking import ndcg_at_k

BEST_FILE = "uqf_lcrec_best.safetensors"
HISTORY_FILE = "uqf_lcrec_validation.json"


def validation_sample(dataset: Dataset, users: int, seed: int) -> list:
    """A seeded sample of ``users`` validation cases (all of them when there are fewer or ``users`` is 0), in
    dataset order."""
    cases = dataset.eval_cases("valid")
    if users == 0 or len(cases) <= users:
        return cases
    pick = sorted(random.Random(seed + 1).sample(range(len(cases)), users))
    return [cases[k] for k in pick]


def autocast_for(device: torch.device, bf16: bool, fp16: bool):
    """The training's autocast, for ranking under the same numerics (a no-op in float32)."""
    if not (bf16 or fp16):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if bf16 else torch.float16)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class Validation(_callback_base()):
    """The early-stopping callback; ``recommender`` ranks with the live model."""

    def __init__(self, recommender, cases: list, every: int, patience: int, beam: int, autocast,
                 resume_from: str | None = None, judge_after: int = 0) -> None:
        self.rec = recommender
        self.cases = cases
        self.every = every
        self.patience = patience
        self.judge_after = judge_after  # evaluations up to this step never count towards stopping (the decay)
        self.beam = beam
        self.autocast = autocast
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"ndcg10": -1.0, "step": 0, "state": None}
        self.bad = 0
        self.stopped_early = False
        self.last_loss: float | None = None
        if resume_from:
            self._restore(Path(resume_from))

    def ndcg(self, model: torch.nn.Module) -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.autocast():
                ranked = self.rec.recommend([c.history for c in self.cases], k=10, beam_size=max(10, self.beam))
        finally:
            model.train(was_training)
        return float(ndcg_at_k(ranked, [c.target for c in self.cases], 10))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = int(state.global_step)
        if step % self.every and step != state.max_steps:
            return control
        score = self.ndcg(model)
        self.history.append({"step": step, "valid_ndcg10": score, "loss": self.last_loss})
        if score > self.best["ndcg10"]:
            self.best = {"ndcg10": score, "step": step, "state": trainable_state(model)}
            self.bad = 0
        elif step > self.judge_after:
            self.bad += 1
        runtime.info(f"lcrec: step {step} valid NDCG@10 {score:.4f} on {len(self.cases)} users "
                     f"(best {self.best['ndcg10']:.4f} at step {self.best['step']})")
        if self.bad >= self.patience:
            self.stopped_early = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        """Keep the best weights and the history beside the Trainer's checkpoint (for ``--resume``)."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            if self.best["state"] is not None:
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in self.best["state"].items()}, str(folder / BEST_FILE))
            (folder / HISTORY_FILE).write_text(json.dumps(self.summary_state()), encoding="utf-8")
        return control

    def summary_state(self) -> dict[str, Any]:
        return {"history": self.history, "best_ndcg10": self.best["ndcg10"], "best_step": self.best["step"],
                "bad": self.bad}

    def _restore(self, folder: Path) -> None:
        if not (folder / HISTORY_FILE).exists():
            runtime.warn(f"{folder}: no validation history in the checkpoint; early stopping starts afresh")
            return
        saved = json.loads((folder / HISTORY_FILE).read_text(encoding="utf-8"))
        self.history, self.bad = saved["history"], int(saved["bad"])
        state = None
        if (folder / BEST_FILE).exists():
            from safetensors.torch import load_file

            state = load_file(str(folder / BEST_FILE))
        self.best = {"ndcg10": float(saved["best_ndcg10"]), "step": int(saved["best_step"]), "state": state}

    def restore_best(self, model: torch.nn.Module) -> None:
        """Put the best evaluation's trainable weights back into ``model``."""
        if self.best["state"] is None:
            return
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.best["state"].items():
                params[name].copy_(value.to(params[name].device))
