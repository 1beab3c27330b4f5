"""A quantizer added in a test (its module here, one registry line) runs through ``uqf quantize`` unchanged:
its flag is in ``--help``, its option in provenance, ``--save-model`` and ``--apply`` go through the interface."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.config_field import opt
from uqf_cli.files import make_provenance, read_sids, save_embeddings
from uqf_cli.quantize import QUANTIZERS, Encoded, QuantizeConfig, Quantizer, Setup

runner = CliRunner()


# ----------------------------------------------------------------------------- the toy method's module


@dataclass
class SignOptions:
    projection_seed: int = opt(0, "Seed of the toy quantizer's random projection.", ge=0)


class SignCoder(nn.Module):
    """Level ``l`` of an item: the signs of ``log2(K_l)`` random projections, read as a binary number."""

    def __init__(self, input_dim: int, bits: list[int], seed: int = 0) -> None:
        super().__init__()
        self.input_dim, self.bits = input_dim, bits
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(input_dim, sum(bits), generator=gen))

    def code(self, embeddings: torch.Tensor, batch_size: int) -> Encoded:
        signs = (embeddings.float() @ self.projection > 0).long()
        levels, start = [], 0
        for b in self.bits:
            levels.append((signs[:, start:start + b] * 2 ** torch.arange(b)).sum(1))
            start += b
        return Encoded(torch.stack(levels, 1).numpy())


def _bits(cfg: QuantizeConfig) -> list[int]:
    return [int(k).bit_length() - 1 for k in cfg.codebook_sizes or []]


class SignQuantizer(Quantizer):
    name = "toy"
    summary = "random-projection signs"
    options = SignOptions

    def fit(self, x: torch.Tensor, cfg: QuantizeConfig, setup: Setup, device: torch.device,
            checkpoint: Any) -> tuple[SignCoder, dict[str, Any]]:
        return SignCoder(x.shape[1], _bits(cfg), setup.options.projection_seed), {}

    def load(self, state: dict[str, torch.Tensor], cfg: QuantizeConfig, input_dim: int) -> SignCoder:
        coder = SignCoder(input_dim, _bits(cfg))
        coder.load_state_dict(state)
        return coder


# ----------------------------------------------------------------------------- the test


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(QUANTIZERS, "toy", SignQuantizer())  # the one registry line


def _embeddings(path: Path, n: int = 64, dim: int = 8, seed: int = 0) -> Path:
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    save_embeddings(path, x, [f"i{k}" for k in range(n)], make_provenance("test", {}), "text", "fp")
    return path


def test_a_registered_quantizer_has_its_flag_and_method_in_help(toy: None) -> None:
    r = runner.invoke(app, ["quantize", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "--projection-seed" in r.output and "toy (random-projection signs)" in r.output


def test_a_registered_quantizer_runs_records_its_option_and_applies(toy: None, tmp_path: Path) -> None:
    emb = _embeddings(tmp_path / "emb.st")
    out, model = tmp_path / "s.jsonl", tmp_path / "q.st"
    r = runner.invoke(app, ["quantize", str(emb), "-o", str(out), "--method", "toy", "--levels", "2",
                            "--codebook-size", "8", "--projection-seed", "3", "--save-model", str(model),
                            "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["method"] == "toy"
    fitted = read_sids(out)
    params = fitted.provenance["parameters"]
    assert params["method"] == "toy" and params["toy"] == {"projection_seed": 3}
    assert fitted.codebook_sizes[:2] == [8, 8]
    applied = tmp_path / "a.jsonl"
    r = runner.invoke(app, ["quantize", "--apply", str(model), str(emb), "-o", str(applied), "-q"])
    assert r.exit_code == 0, r.output
    again = read_sids(applied)
    assert again.item_ids == fitted.item_ids
    assert np.array_equal(np.asarray(again.codes)[:, :2], np.asarray(fitted.codes)[:, :2])  # same raw codes


def test_another_methods_option_is_refused_naming_its_method(toy: None, tmp_path: Path) -> None:
    emb = _embeddings(tmp_path / "emb.st")
    r = runner.invoke(app, ["quantize", str(emb), "-o", str(tmp_path / "s.jsonl"), "--method", "rqkmeans",
                            "--projection-seed", "3", "-q"])
    assert r.exit_code == 2
    assert "--projection-seed" in r.output and "--method toy" in r.output
