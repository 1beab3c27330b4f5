"""A backbone added from outside uqf: its module and one registration, nothing else, give it a train-rec flag,
provenance and evaluation (the registry's contract, docs/architecture.md "Adding a recommender").

The toy ranks the items by how often they stand among the last ``--toy-window`` items of the users' train
parts ("most recent items"). It is registered in a fresh interpreter before ``uqf_cli.cli`` is imported, as
a plugin would be, and the real entry point runs there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import make_dataset

from uqf_cli.core.config_field import opt
from uqf_cli.core.errors import OptionError
from uqf_cli.data.dataset import Dataset
from uqf_cli.files import SidTable, atomic_path, check_output, make_provenance
from uqf_cli.rec import registry
from uqf_cli.rec.base import read_model_meta, write_model_meta
from uqf_cli.rec.options import BackboneOptions
from uqf_cli.rec.registry import Backbone

NAME = "toy"


@dataclass
class ToyOptions(BackboneOptions):
    """The toy's one option of its own."""

    toy_window: int = opt(2, "toy: the last N items of each user's train part that count", ge=1)
    seed: int = 0
    device: str = "auto"


def train(dataset: Dataset, sids: SidTable | None, output: str | Path, options: dict[str, Any],
          force: bool = False) -> dict[str, Any]:
    opts = ToyOptions.from_dict(options)
    check_output(output, force, "model")
    counts = Counter(i for seq in dataset.train_sequences().values() for i in seq[-opts.toy_window:])
    ranking = sorted(dataset.item_ids, key=lambda i: -counts[i])  # ties: dataset order
    params = opts.params()
    provenance = make_provenance("train-rec", {"backbone": NAME, **params})
    with atomic_path(output, force, directory=True) as tmp:
        write_model_meta(Path(tmp), NAME, dataset, params, provenance, ranking=ranking)
    return {"backbone": NAME, "output": str(output), "top_item": ranking[0]}


class ToyRecommender:
    backbone = NAME

    def __init__(self, ranking: list[str]) -> None:
        self.ranking = ranking

    def recommend(self, histories: Sequence[Sequence[str]], k: int, beam_size: int | None = None) -> list[list[str]]:
        return [self.ranking[:k] for _ in histories]


def load(model_dir: str | Path, device: Any = "cpu") -> ToyRecommender:
    return ToyRecommender(read_model_meta(model_dir, NAME)["ranking"])


TOY = Backbone(NAME, ToyOptions, train, load, panel="Toy (--backbone toy)")

# Runs in a fresh interpreter: register, then import the CLI and run it (argv[1]: the work folder).
SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import test_registry_backbone as toy
from uqf_cli.rec import register
register(toy.TOY)
from typer.testing import CliRunner
from uqf_cli.cli import app, run
work = Path(sys.argv[1])
ds, model = str(work / "ds"), str(work / "model")
(work / "help.txt").write_text(CliRunner().invoke(app, ["train-rec", "--help"], env={{"COLUMNS": "200"}}).output)
codes = [run(["train-rec", ds, "-o", model, "--backbone", "toy", "--toy-window", "1", "-q"]),
         run(["evaluate", model, ds, "--split", "test", "-o", str(work / "metrics.json"), "-q"]),
         run(["train-rec", ds, "-o", str(work / "tiger"), "--toy-window", "1", "-q"])]
(work / "codes.json").write_text(json.dumps(codes))
"""


def test_a_registered_backbone_trains_and_evaluates_through_the_cli(tmp_path: Path) -> None:
    ds = Dataset.load(make_dataset(tmp_path / "ds"))
    script = SCRIPT.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "UQF_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    help_text = (tmp_path / "help.txt").read_text()
    assert "--toy-window" in help_text and "Toy (--backbone toy)" in help_text
    assert "tiger | lcrec | sasrec | lightgcn | pop | hybrid | textknn | toy" in " ".join(help_text.split())
    codes = json.loads((tmp_path / "codes.json").read_text())
    assert codes == [0, 0, 2], done.stderr  # the third: tiger does not read --toy-window
    assert "--toy-window: the tiger backbone does not use this option" in done.stderr
    meta = json.loads((tmp_path / "model" / "uqf_model.json").read_text())
    assert meta["options"] == {"toy_window": 1, "seed": 0}
    assert meta["provenance"]["parameters"] == {"backbone": "toy", "toy_window": 1, "seed": 0}
    expected = train(ds, None, tmp_path / "again", {"toy_window": 1})["top_item"]
    assert meta["ranking"][0] == expected
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backbone"] == "toy" and metrics["split"] == "test"


def test_registering_adds_the_name_and_unknown_names_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._registered, NAME, TOY)
    assert registry.names()[-1] == NAME and registry.get(NAME) is TOY
    with pytest.raises(OptionError, match=r"known: tiger, .*, toy"):
        registry.get("gpt9")
    with pytest.raises(OptionError, match="--epochs: the toy backbone does not use"):
        TOY.check_uses({"toy_window": 3, "seed": 1, "epochs": 2})


def test_every_builtin_backbone_fills_the_interface() -> None:
    for backbone in registry.backbones():
        assert backbone.name in registry.BUILTIN
        assert callable(backbone.train) and callable(backbone.load)
        assert issubclass(backbone.options, BackboneOptions)
        backbone.options.from_dict({})  # its defaults pass its own checks
    with_curves = {b.name for b in registry.backbones() if b.curve is not None}
    assert with_curves == {"tiger", "sasrec", "hybrid"}
