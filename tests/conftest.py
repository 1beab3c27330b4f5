"""Shared fixtures: small synthetic datasets written through the real file writers, and interruptions of
training runs at a known point."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NO_COLOR", "1")

from uqf_cli.files import write_dataset_dir
from uqf_cli.files.checkpoint import Checkpointer, TrainerCheckpoints

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_dataset(path: Path, n_users: int = 30, n_items: int = 12, seed: int = 0) -> Path:
    """A small dataset with text and sequences of length 4-8, written with the real writer."""
    import random

    rng = random.Random(seed)
    items = {
        str(i): {"title": f"Item {i} {'pen' if i % 2 else 'paper'}", "brand": f"B{i % 3}",
                 "categories": "Office, " + ("Pens" if i % 2 else "Paper"), "description": f"desc {i}"}
        for i in range(n_items)
    }
    seqs = {f"u{u}": [str(rng.randrange(n_items)) for _ in range(rng.randint(4, 8))] for u in range(n_users)}
    write_dataset_dir(path, items, seqs, {"source": "synthetic"})
    return path


@pytest.fixture
def tiny_ds(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")


@pytest.fixture
def stop_after_epoch(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None], None]:
    """``stop_after_epoch(n)``: checkpointing runs save a checkpoint after epoch ``n`` and raise KeyboardInterrupt,
    as a Ctrl-C right after that save would; ``stop_after_epoch(None)`` lets runs finish again."""
    original = Checkpointer.epoch_done

    def arm(n: int | None) -> None:
        def epoch_done(self: Checkpointer, epoch: int, snapshot, last: bool = False) -> None:
            if epoch != n:
                return original(self, epoch, snapshot, last)
            self.save(snapshot())
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")

        monkeypatch.setattr(Checkpointer, "epoch_done", original if n is None else epoch_done)

    return arm


@pytest.fixture
def stop_after_step(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None], None]:
    """``stop_after_step(n)``: Trainer-based runs (LC-Rec) save a checkpoint after optimizer step ``n`` and raise
    KeyboardInterrupt; ``stop_after_step(None)`` lets runs finish again."""
    original = TrainerCheckpoints.callback

    def arm(n: int | None) -> None:
        def callback(self: TrainerCheckpoints):
            class StopAfter(type(original(self))):
                def on_step_end(self, args, state, control, **kwargs):
                    control = super().on_step_end(args, state, control, **kwargs)
                    if state.global_step == n:
                        control.should_save = True
                    return control

                def on_save(self, args, state, control, **kwargs):
                    control = super().on_save(args, state, control, **kwargs)
                    if state.global_step == n:
                        raise KeyboardInterrupt(f"stopped after step {n}")
                    return control

            return StopAfter()

        monkeypatch.setattr(TrainerCheckpoints, "callback", original if n is None else callback)

    return arm
