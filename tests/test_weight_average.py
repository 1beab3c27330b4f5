"""--ema-decay: the running average of the weights (uqf_cli/rec/weight_average.py) in TIGER and the hybrid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_tiger import TINY, write_random_sids
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import read_sids
from uqf_cli.rec import tiger
from uqf_cli.rec.weight_average import WeightAverage, averaged, make_average


def test_average_follows_the_formula_and_applied_restores_the_weights() -> None:
    model = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in model.parameters()]
    avg = WeightAverage(model, decay=0.9)
    expected = [p.clone() for p in start]
    for t in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        avg.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)]
    own = [p.detach().clone() for p in model.parameters()]
    with avg.applied():
        for e, p in zip(expected, model.parameters(), strict=True):
            assert torch.allclose(p, e)
    for o, p in zip(own, model.parameters(), strict=True):
        assert torch.equal(o, p)  # the model's own weights are back
    assert not torch.allclose(expected[0], own[0])  # the average lags the weights
    assert int(avg.updates) == 5
    assert make_average(model, 0.0) is None
    with averaged(None):  # no average: the block runs on the model's own weights
        assert torch.equal(next(model.parameters()), own[0])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)


def test_tiger_saves_the_averaged_weights_and_resumes_them(tiny_ds: Path, tmp_path: Path, stop_after_epoch) -> None:
    ds = Dataset.load(tiny_ds)
    sids = read_sids(write_random_sids(tiny_ds, tmp_path / "s.jsonl"))
    opts = {**TINY, "epochs": 3, "patience": 5}
    raw = tiger.train(ds, sids, tmp_path / "raw", opts)
    ema = tiger.train(ds, sids, tmp_path / "ema", {**opts, "ema_decay": 0.9})
    assert ema["parameters_sha256"] != raw["parameters_sha256"]  # the saved weights are the average
    assert tiger._param_digest(tiger.load(tmp_path / "ema", "cpu").model) == ema["parameters_sha256"]
    stop_after_epoch(1)  # the checkpoint carries the average: a resumed run ends with the same weights
    with pytest.raises(KeyboardInterrupt):
        tiger.train(ds, sids, tmp_path / "cut", {**opts, "ema_decay": 0.9})
    stop_after_epoch(None)
    resumed = tiger.train(ds, sids, tmp_path / "cut", {**opts, "ema_decay": 0.9, "resume": True})
    assert resumed["parameters_sha256"] == ema["parameters_sha256"]
    assert [h["valid_ndcg10"] for h in resumed["history"]] == [h["valid_ndcg10"] for h in ema["history"]]


def test_ema_decay_out_of_range_is_one_clear_line(tiny_ds: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from uqf_cli.cli import app

    sids = write_random_sids(tiny_ds, tmp_path / "s.jsonl")
    res = CliRunner().invoke(app, ["train-rec", str(tiny_ds), "--sids", str(sids), "-o", str(tmp_path / "m"),
                                   "--ema-decay", "1.5"])
    assert res.exit_code == 2 and "--ema-decay" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists()
