"""TIGER backbone: vocabulary, training, saving/loading, determinism, DDP over two gloo processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.errors import InputError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, read_sids, write_sids
from uqf_cli.rec import tiger

TINY = {"epochs": 2, "batch_size": 32, "d_model": 16, "d_kv": 8, "num_heads": 2, "d_ff": 32, "num_layers": 1,
        "num_decoder_layers": 1, "eval_users": 50, "beam_size": 20, "lr": 5e-3, "warmup_steps": 2}


def write_random_sids(ds_dir: Path, path: Path, levels: int = 2, k: int = 4, seed: int = 0,
                      collide: bool = False, drop: int = 0) -> Path:
    ds = Dataset.load(ds_dir)
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, ...]] = []
    for _ in ds.item_ids:
        while True:
            r = tuple(int(c) for c in rng.integers(0, k, levels))
            if collide or r not in rows:
                rows.append(r)
                break
    if collide:
        rows[1] = rows[0]
    ids = ds.item_ids[drop:]
    table = SidTable(ids, np.asarray(rows[drop:]), [k] * levels, dataset_fingerprint=ds.fingerprint)
    write_sids(path, table, force=True)
    return path


def test_vocab_layout_and_collision_level(tiny_ds: Path, tmp_path: Path) -> None:
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl", collide=True))
    vocab = tiger.TigerVocab.build(sids, sids.item_ids, user_tokens=3)
    assert vocab.dedup_level and vocab.levels == 3
    assert vocab.offsets[:2] == [2, 6]
    assert len({tuple(r) for r in vocab.codes.tolist()}) == len(sids.item_ids)  # now unique
    assert vocab.codes[1, 2] == 1 and vocab.codes[0, 2] == 0
    assert vocab.size == 2 + 4 + 4 + vocab.codebook_sizes[2] + 3
    assert vocab.user_token("u1") == vocab.user_token("u1") and vocab.user_offset <= vocab.user_token("u1") < vocab.size
    ids, mask = tiger.encode_histories(vocab, [[0, 1], [2]], max_history=1, user_ids=["u1", "u2"])
    assert ids.shape == (2, 4) and mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert ids[0, 1:].tolist() == vocab.token_matrix()[1].tolist()  # only the last history item kept


def test_train_save_load_recommend_deterministic(tiny_ds: Path, tmp_path: Path) -> None:
    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl"))
    s1 = tiger.train(ds, sids, tmp_path / "m1", TINY)
    s2 = tiger.train(ds, sids, tmp_path / "m2", TINY)
    assert s1["parameters_sha256"] == s2["parameters_sha256"]  # same seed, same model on CPU
    assert s1["best_epoch"] >= 1 and 0.0 <= s1["best_valid_ndcg10_sample"] <= 1.0
    for name in ("config.json", "model.safetensors", "uqf_model.json", "sids.jsonl"):
        assert (tmp_path / "m1" / name).exists()
    meta = json.loads((tmp_path / "m1" / "uqf_model.json").read_text())
    assert meta["backbone"] == "tiger" and meta["sid_hash"] == sids.content_hash()
    assert meta["provenance"]["inputs"]["sids"]["sha256"]
    rec = tiger.load(tmp_path / "m1", "cpu")
    out = rec.recommend([["1", "2"], ["3"]], k=5, beam_size=20)
    assert [len(o) for o in out] == [5, 5]
    assert all(i in ds.items for o in out for i in o) and all(len(set(o)) == 5 for o in out)
    with pytest.raises(Exception, match="beam"):
        rec.recommend([["1"]], k=25, beam_size=20)
    s3 = tiger.train(ds, sids, tmp_path / "m3", {**TINY, "seed": 1})
    assert s3["parameters_sha256"] != s1["parameters_sha256"]


def test_sids_must_cover_dataset(tiny_ds: Path, tmp_path: Path) -> None:
    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl", drop=2))
    with pytest.raises(InputError, match="do not cover"):
        tiger.train(ds, sids, tmp_path / "m", TINY)
    res = CliRunner().invoke(app, ["train-rec", str(tiny_ds), "--sids", str(tmp_path / "s.jsonl"),
                                   "-o", str(tmp_path / "m"), "--backbone", "tiger", "--epochs", "1"])
    assert res.exit_code == 2 and "do not cover" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, ds_dir: str, sids_path: str, out: str, result_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    summary = tiger.train(Dataset.load(ds_dir), read_sids(sids_path), out, {**TINY, "device": "cpu"})
    Path(result_dir, f"rank{rank}.json").write_text(json.dumps(summary))
    import torch.distributed as dist

    dist.destroy_process_group()


def test_two_gloo_processes_train_one_model(tiny_ds: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    sids_path = write_random_sids(tiny_ds, tmp_path / "s.jsonl")
    # fork (CPU only): the workers inherit the imported modules instead of re-importing torch/transformers
    mp.start_processes(_ddp_worker, nprocs=2, join=True, start_method="fork",
                       args=(2, _free_port(), str(tiny_ds), str(sids_path), str(tmp_path / "m"), str(tmp_path)))
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["parameters_sha256"] == r1["parameters_sha256"]  # DDP kept the replicas identical
    assert r0["epochs_run"] == r1["epochs_run"]
    loaded = tiger._param_digest(tiger.load(tmp_path / "m", "cpu").model)
    assert loaded == r0["parameters_sha256"]  # the saved model is the one both ranks hold


def test_interrupted_then_resumed_equals_uninterrupted(tiny_ds: Path, tmp_path: Path, stop_after_epoch) -> None:
    from uqf_cli.files.checkpoint import checkpoint_path

    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl"))
    opts = {**TINY, "epochs": 3, "patience": 5}
    full = tiger.train(ds, sids, tmp_path / "full", opts)
    stop_after_epoch(1)  # save a checkpoint after epoch 1, then stop as a Ctrl-C would
    with pytest.raises(KeyboardInterrupt):
        tiger.train(ds, sids, tmp_path / "cut", opts)
    assert checkpoint_path(tmp_path / "cut").exists() and not (tmp_path / "cut").exists()
    stop_after_epoch(None)
    with pytest.raises(InputError, match="different run"):  # another run's checkpoint is refused
        tiger.train(ds, sids, tmp_path / "cut", {**opts, "lr": 1e-3, "resume": True})
    resumed = tiger.train(ds, sids, tmp_path / "cut", {**opts, "resume": True})
    assert resumed["parameters_sha256"] == full["parameters_sha256"]
    def untimed(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k not in ("seconds", "cpu_seconds")} for h in history]

    assert untimed(resumed["history"]) == untimed(full["history"]) and resumed["best_epoch"] == full["best_epoch"]
    cpu = [h["cpu_seconds"] for h in resumed["history"]]
    assert cpu == sorted(cpu) and all(c >= 0 for c in cpu)  # cumulative CPU seconds, carried across the resume
    assert not checkpoint_path(tmp_path / "cut").exists()  # removed once the model directory is written


def test_presets_and_fast_dropout() -> None:
    small = tiger.TigerOptions.from_dict({"preset": "small", "d_ff": 256})
    assert (small.num_layers, small.num_decoder_layers, small.num_heads, small.d_kv) == (2, 2, 4, 32)
    assert small.d_ff == 256  # an explicit option beats the preset
    assert tiger.TigerOptions.from_dict({}).d_ff == 1024 and tiger.TigerOptions().num_layers == 4
    with pytest.raises(Exception, match="preset"):
        tiger.TigerOptions.from_dict({"preset": "huge"})
    torch.manual_seed(0)
    drop = tiger.FastDropout(0.1).train()
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.1) < 0.005  # drops p of the elements ...
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))  # ... and rescales the rest
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)
    assert torch.equal(drop.eval()(x), x)


def test_hf_engine_trains_deterministically_and_differs_from_lean(tiny_ds: Path, tmp_path: Path) -> None:
    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl"))
    hf1 = tiger.train(ds, sids, tmp_path / "hf1", {**TINY, "epochs": 1, "engine": "hf"})
    hf2 = tiger.train(ds, sids, tmp_path / "hf2", {**TINY, "epochs": 1, "engine": "hf"})
    lean = tiger.train(ds, sids, tmp_path / "lean", {**TINY, "epochs": 1})
    assert hf1["parameters_sha256"] == hf2["parameters_sha256"]
    assert lean["parameters_sha256"] != hf1["parameters_sha256"]  # another forward (bf16, no attention dropout)
    assert json.loads((tmp_path / "hf1" / "uqf_model.json").read_text())["options"]["engine"] == "hf"
    assert tiger.load(tmp_path / "lean", "cpu").recommend([["1"]], k=5)[0]
    with pytest.raises(Exception, match="engine"):
        tiger.TigerOptions.from_dict({"engine": "jax"})


def test_learning_rate_schedules_warm_up_then_decay_to_zero():
    from uqf_cli.rec.schedule import lr_multiplier
    from uqf_cli.rec.tiger.options import TigerOptions
    from uqf_cli.rec.tiger.training import warmup_steps

    assert warmup_steps(TigerOptions(warmup_ratio=0.01), 7600) == 76
    assert warmup_steps(TigerOptions(), 7600) == 152  # the default: 2% of the planned steps
    steps_only = TigerOptions(warmup_ratio=0.0)  # --warmup-ratio 0: --warmup-steps, at most a tenth
    assert warmup_steps(steps_only, 7600) == 200 and warmup_steps(steps_only, 100) == 10
    assert lr_multiplier(0, 10, 100, "cosine") == 0.1 and lr_multiplier(9, 10, 100, "cosine") == 1.0
    assert abs(lr_multiplier(55, 10, 100, "cosine") - 0.5) < 1e-9  # half way through the decay
    assert lr_multiplier(55, 10, 100, "linear") == 0.5 and lr_multiplier(99, 10, 100, "constant") == 1.0
    assert lr_multiplier(100, 10, 100, "cosine") == 0.0


def test_decay_floor_clips_the_schedule_and_stays_after_the_decay_epochs():
    import torch

    from uqf_cli.rec.schedule import lr_multiplier
    from uqf_cli.rec.tiger.options import TigerOptions
    from uqf_cli.rec.tiger.training import make_scheduler

    # the floor clips, never rescales: above it every step keeps the multiplier it has without a floor
    for step in range(0, 100):
        plain, floored = lr_multiplier(step, 10, 100, "cosine"), lr_multiplier(step, 10, 100, "cosine", 0.05)
        assert floored == (plain if plain >= 0.05 else 0.05)
    assert lr_multiplier(250, 10, 100, "cosine", 0.05) == 0.05 and lr_multiplier(250, 10, 100, "linear") == 0.0

    def multipliers(opts: TigerOptions, steps_per_epoch: int, steps: int) -> list[float]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = make_scheduler(optimizer, opts, steps_per_epoch)
        out = []
        for _ in range(steps):
            out.append(sched.get_last_lr()[0])
            optimizer.step()
            sched.step()
        return out

    # decay over --decay-epochs (3 x 10 steps), then the floor until the --epochs cap
    lrs = multipliers(TigerOptions(epochs=6, decay_epochs=3, warmup_ratio=0.1, min_lr_ratio=0.1), 10, 60)
    assert lrs[2] == 1.0 and lrs[15] > 0.1 and lrs[30:] == [0.1] * 30
    # a cap below the decay epochs: the decay is planned over the cap, as it was before the floor
    capped = multipliers(TigerOptions(epochs=2, decay_epochs=30, warmup_ratio=0.1, min_lr_ratio=0.0), 10, 20)
    assert capped == [lr_multiplier(s, 2, 20, "cosine") for s in range(20)]


def test_training_past_the_decay_ends_by_early_stopping(tiny_ds: Path, tmp_path: Path) -> None:
    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "sids.jsonl"))
    opts = {**TINY, "epochs": 40, "decay_epochs": 2, "min_lr_ratio": 0.05, "patience": 2}
    summary = tiger.train(ds, sids, tmp_path / "m", opts)
    assert 2 < summary["epochs_run"] < 40  # trained on past the decay at the floor, stopped by patience
    assert summary["epochs_run"] - summary["best_epoch"] == 2


def test_unknown_schedule_and_tiny_validation_beam_are_refused():
    from uqf_cli.core.errors import OptionError
    from uqf_cli.rec.tiger.options import TigerOptions

    with pytest.raises(OptionError, match="--lr-schedule"):
        TigerOptions.from_dict({"lr_schedule": "step"})
    with pytest.raises(OptionError, match="--eval-beam"):
        TigerOptions.from_dict({"eval_beam": 5})
