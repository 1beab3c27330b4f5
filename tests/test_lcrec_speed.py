"""benchmarks/speed/lcrec_speed.py --quick end to end on a tiny dataset and a tiny causal LM (no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_dataset
from test_lcrec import _sids, _tiny_llama

from benchmarks.speed import lcrec_speed
from uqf_cli.data.dataset import Dataset
from uqf_cli.rec import lcrec

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode_compares_float32_and_the_levers_on_the_same_samples(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds", n_users=24, n_items=12))
    sids = _sids(ds, tmp_path / "sids.jsonl")
    corpus = [lcrec.prompt_text(lcrec.SEQ_INSTRUCTION.format(history="x")), *(ds.title(i) for i in ds.item_ids)]
    base = _tiny_llama(tmp_path / "tiny-llama", corpus * 4)
    out = tmp_path / "speed.md"
    cmd = [sys.executable, "-m", "benchmarks.speed.lcrec_speed", "--dataset", str(ds.path), "--sids",
           str(sids.path), "--base-model", str(base), "--quick", "--levers", "--loss-seeds", "1",
           "--micro-batch-sweep", "1,2", "--micro-batch-overhead", "8", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    train = {row["config"]: row for row in result["training"]}
    cost_aware = "all levers, cost-aware (overhead 8, up to 4 passes)"
    assert list(train) == ["float32 (today)", "bf16 autocast", "response-only head", "compact prompt",
                           "bucketed batches", "all levers", "all levers, micro-batches 1",
                           "all levers, micro-batches 2", cost_aware]
    assert {row["examples"] for row in train.values()} == {16} and {row["steps"] for row in train.values()} == {4}
    # the sweep: K fixed passes a batch of 4; cost-aware: 1 to 4 by batch; the same batches, so the same padding
    # as the fixed counts allow, and one pass is random batches' padding
    one, two = train["all levers, micro-batches 1"], train["all levers, micro-batches 2"]
    assert one["forwards_per_batch"] == 1 and two["forwards_per_batch"] == 2
    assert train["float32 (today)"]["forwards_per_batch"] == 1
    assert 1 <= train[cost_aware]["forwards_per_batch"] <= 4
    assert two["padding_share"] <= one["padding_share"] == train["compact prompt"]["padding_share"]
    assert train[cost_aware]["options"]["micro_batch_overhead"] == 8
    assert one["options"]["micro_batch_overhead"] == 0 and one["options"]["micro_batches"] == 1
    assert train["float32 (today)"]["precision"] == "fp32"
    assert train["float32 (today)"]["options"]["prompt_template"] == "alpaca"
    assert train["bucketed batches"]["padding_share"] <= train["float32 (today)"]["padding_share"]
    # the same samples, the same seed: the lm-head lever alone changes no number but the time
    assert abs(train["response-only head"]["heldout_loss"] - train["float32 (today)"]["heldout_loss"]) < 1e-4
    assert all(row["samples_per_s"] > 0 and row["heldout_loss"] > 0 for row in train.values())
    assert result["prompt_tokens"]["compact"] < result["prompt_tokens"]["alpaca"]
    dec = result["decoding"]
    assert dec["users"] == 8 and 0.0 <= dec["identical_top10"] <= 1.0 and len(dec["rows"]) == 5
    assert "per-beam cache" in dec["rows"][3]["path"] and dec["speedup_shared_prefix"] > 0
    assert 0.0 <= dec["agreement_per_beam"]["identical"] <= 1.0
    assert "beams sharing the prompt vs Hugging Face's per-beam cache" in out.read_text()
    md = out.read_text()
    assert "python -m benchmarks.speed.lcrec_speed --dataset" in md and "Load average" in md and "| all levers |" in md
    assert f"each run as up to {result['micro_batches']} length-sorted micro-batches" in md
    assert f"+ {result['micro_batch_overhead']} a forward pass" in md and "Fastest all-levers micro-batch setting" in md
    assert "| all levers, micro-batches 2 |" in md
    # --loss-seeds 1: float32 and all levers, each over the timed batch order and one more, untimed
    noise = result["loss_noise"]
    assert noise["loss_seeds"] == 1 and noise["order_seeds"] == [1]
    assert [row["config"] for row in noise["rows"]] == ["float32 (today)", "all levers"]
    for row in noise["rows"]:
        losses = row["heldout_losses"]
        assert row["orders"] == len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
        assert losses[0] == train[row["config"]]["heldout_loss"]  # order 0 is the timed run
        assert losses[1] != losses[0]  # another batch order, so another model
        assert row["min"] <= row["mean"] <= row["max"] and row["min"] == min(losses) and row["max"] == max(losses)
    f32, levers = noise["rows"]
    assert math.isclose(noise["difference"], levers["mean"] - f32["mean"])
    assert noise["within_noise"] == noise["ranges_overlap"] and isinstance(noise["mean_in_float32_range"], bool)
    assert noise["verdict"].startswith("all levers - float32 mean held-out loss")
    assert "## Held-out loss over batch orders" in md and f"- verdict: {noise['verdict']}" in md
    assert md.index("## Training") < md.index("## Held-out loss over batch orders") < md.index("## Decoding")


def test_micro_batch_rows_default_off_and_no_duplicate_of_all_levers() -> None:
    parse = lcrec_speed.parse_args
    args = parse(["--dataset", "d", "--sids", "s"])
    assert args.micro_batch_sweep == [] and args.micro_batch_overhead == 0 and lcrec_speed.micro_batch_rows(args) == {}
    defaults = lcrec.LcRecOptions()
    rows = lcrec_speed.micro_batch_rows(parse(["--dataset", "d", "--sids", "s", "--micro-batch-sweep", "1,2,4",
                                               "--micro-batch-overhead", str(defaults.micro_batch_overhead)]))
    assert list(rows) == [f"all levers, micro-batches {k}" for k in (1, 2, 4)]  # cost-aware = the all-levers row
    rows = lcrec_speed.micro_batch_rows(parse(["--dataset", "d", "--sids", "s", "--micro-batch-sweep", "1,8",
                                               "--micro-batch-overhead", str(defaults.micro_batch_overhead)]))
    name = f"all levers, cost-aware (overhead {defaults.micro_batch_overhead}, up to 8 passes)"
    assert list(rows)[-1] == name and rows[name]["micro_batches"] == 8
    assert lcrec_speed.fastest_lines([{"config": "all levers", "samples_per_s": 1.0}]) == []
    for bad in (["--micro-batch-sweep", "0,2"], ["--micro-batch-sweep", "a"], ["--micro-batch-overhead", "-1"]):
        with pytest.raises(SystemExit):
            parse(["--dataset", "d", "--sids", "s", *bad])


def test_loss_seeds_default_off_and_the_verdict() -> None:
    args = lcrec_speed.parse_args(["--dataset", "d", "--sids", "s"])
    assert args.loss_seeds == 0 and lcrec_speed.noise_lines({}) == []
    stats = lcrec_speed.loss_stats
    inside = lcrec_speed.noise_verdict(stats([8.0, 8.4, 8.2]), stats([8.3, 8.5]))
    assert inside["mean_in_float32_range"] and inside["ranges_overlap"] and inside["within_noise"]
    touching = lcrec_speed.noise_verdict(stats([8.0, 8.1]), stats([8.1, 8.6]))
    assert not touching["mean_in_float32_range"] and touching["within_noise"]
    apart = lcrec_speed.noise_verdict(stats([8.0, 8.1]), stats([8.4, 8.5]))
    assert not apart["ranges_overlap"] and not apart["within_noise"]
    assert math.isclose(apart["difference"], 0.4)
