"""A fusion method added in a test (its module here, one registry line) runs through ``uqf fuse`` unchanged:
its flag is in ``--help``, its option in provenance; ``--save-model``, ``--apply`` and ``--plot`` go through
the interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import make_dataset
from typer.testing import CliRunner

from uqf_cli.cli import app
from uqf_cli.core.config_field import opt
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import load_embeddings, make_provenance, save_embeddings
from uqf_cli.fuse import FUSIONS, Applied, Fused, FuseInputs, Fusion, SavedFuser, align_inputs, load_collab, load_text

runner = CliRunner()


# ----------------------------------------------------------------------------- the toy method's module


@dataclass
class MeanOptions:
    text_weight: float = opt(0.5, "Weight of the text rows in the toy mean (the collab rows get the rest).",
                             ge=0, le=1)


def _mean(text: torch.Tensor, collab: torch.Tensor, w: float) -> torch.Tensor:
    return w * text + (1 - w) * collab


class MeanFusion(Fusion):
    """A weighted mean of the two (aligned, same-width) inputs; "trains" in one step, so it can be saved."""

    name = "toy"
    summary = "weighted mean of the two inputs"
    options = MeanOptions
    trains = True

    def fit(self, inputs: FuseInputs) -> Fused:
        w = inputs.options.text_weight
        return Fused(_mean(inputs.data.text, inputs.data.collab, w), curve=[{"epoch": 1, "loss": 0.0}], model=w)

    def save(self, fused: Fused) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        return {"text_weight": torch.tensor([fused.model])}, {"text_weight": fused.model}, {}

    def apply(self, saved: SavedFuser, text_path: str | Path, collab_path: str | Path | None,
              device: torch.device) -> Applied:
        data = align_inputs(load_text(text_path), load_collab(collab_path) if collab_path else None)
        return Applied(data, _mean(data.text, data.collab, float(saved.tensors["text_weight"][0])))


# ----------------------------------------------------------------------------- the test


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FUSIONS, "toy", MeanFusion())  # the one registry line


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    ds = make_dataset(tmp_path / "ds")
    data = Dataset.load(ds)
    gen = torch.Generator().manual_seed(0)
    paths = {"ds": ds, "text": tmp_path / "text.st", "collab": tmp_path / "collab.st"}
    for modality in ("text", "collab"):
        x = torch.randn(len(data.item_ids), 8, generator=gen)
        save_embeddings(paths[modality], x, list(data.item_ids), make_provenance("test", {}), modality,
                        data.fingerprint)
    return paths


def _fuse(inputs: dict[str, Path], *extra: str) -> list[str]:
    return ["fuse", "--text", str(inputs["text"]), "--collab", str(inputs["collab"]), "--dataset",
            str(inputs["ds"]), "-q", *extra]


def test_a_registered_fusion_method_has_its_flag_and_name_in_help(toy: None) -> None:
    r = runner.invoke(app, ["fuse", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "--text-weight" in r.output and "uqf | concat | text | collab | toy" in r.output


def test_a_registered_fusion_method_runs_records_its_option_saves_and_applies(
        toy: None, inputs: dict[str, Path], tmp_path: Path) -> None:
    out, fuser = tmp_path / "u.st", tmp_path / "fuser.st"
    r = runner.invoke(app, _fuse(inputs, "-o", str(out), "--method", "toy", "--text-weight", "0.25",
                                 "--save-model", str(fuser)))
    assert r.exit_code == 0, r.output
    fused = load_embeddings(out)
    assert fused.provenance["parameters"]["method"] == "toy"
    assert fused.provenance["parameters"]["toy"] == {"text_weight": 0.25}
    text, collab = load_embeddings(inputs["text"]), load_embeddings(inputs["collab"])
    expected = _mean(F.normalize(text.embeddings, dim=-1), F.normalize(collab.embeddings, dim=-1), 0.25)
    assert torch.allclose(fused.embeddings, expected, atol=1e-6)
    applied = tmp_path / "a.st"
    r = runner.invoke(app, ["fuse", "--apply", str(fuser), "--text", str(inputs["text"]), "--collab",
                            str(inputs["collab"]), "-o", str(applied), "-q"])
    assert r.exit_code == 0, r.output
    again = load_embeddings(applied)
    assert again.extra_metadata["method"] == "toy"
    assert torch.allclose(again.embeddings, fused.embeddings, atol=1e-6)


def test_plot_goes_through_the_interface(toy: None, inputs: dict[str, Path], tmp_path: Path) -> None:
    r = runner.invoke(app, _fuse(inputs, "-o", str(tmp_path / "c.st"), "--method", "concat", "--plot",
                                 str(tmp_path / "c.png")))
    assert r.exit_code == 2 and "only --method uqf or --method toy has a loss curve" in r.output
    pytest.importorskip("matplotlib")
    r = runner.invoke(app, _fuse(inputs, "-o", str(tmp_path / "u.st"), "--method", "toy", "--plot",
                                 str(tmp_path / "u.png")))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "u.png").stat().st_size > 0


def test_another_methods_option_is_refused_naming_its_method(toy: None, inputs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    r = runner.invoke(app, _fuse(inputs, "-o", str(tmp_path / "c.st"), "--method", "concat", "--text-weight",
                                 "0.25"))
    assert r.exit_code == 2
    assert "--text-weight" in r.output and "--method toy" in r.output
