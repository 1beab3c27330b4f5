"""benchmarks/speed/lcrec_speed.py --quick end to end on a tiny dataset and a tiny causal LM (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import make_dataset
from test_lcrec import _sids, _tiny_llama

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
           str(sids.path), "--base-model", str(base), "--quick", "--levers", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    train = {row["config"]: row for row in result["training"]}
    assert list(train) == ["float32 (today)", "bf16 autocast", "response-only head", "compact prompt",
                           "bucketed batches", "all levers"]
    assert {row["examples"] for row in train.values()} == {16} and {row["steps"] for row in train.values()} == {4}
    assert train["float32 (today)"]["precision"] == "fp32"
    assert train["float32 (today)"]["options"]["prompt_template"] == "alpaca"
    assert train["bucketed batches"]["padding_share"] <= train["float32 (today)"]["padding_share"]
    # the same samples, the same seed: the lm-head lever alone changes no number but the time
    assert abs(train["response-only head"]["heldout_loss"] - train["float32 (today)"]["heldout_loss"]) < 1e-4
    assert all(row["samples_per_s"] > 0 and row["heldout_loss"] > 0 for row in train.values())
    assert result["prompt_tokens"]["compact"] < result["prompt_tokens"]["alpaca"]
    dec = result["decoding"]
    assert dec["users"] == 8 and 0.0 <= dec["identical_top10"] <= 1.0 and len(dec["rows"]) == 4
    md = out.read_text()
    assert "python -m benchmarks.speed.lcrec_speed --dataset" in md and "Load average" in md and "| all levers |" in md
