"""The backbones ``uqf train-rec``, ``evaluate`` and ``recommend`` know: a name and one small interface each.

As GRID keeps one quantization strategy per file, each backbone is its own module (or package) whose
``SPEC`` is a :class:`Backbone`: its options dataclass, ``train``, ``load`` and, where its model
directory records a per-epoch curve, the hook that reads it for ``--plot``. Adding a backbone is that
module, one line in :data:`BUILTIN`, its test and its doc; :func:`register` adds one at run time (a
plugin, a test): registered before ``uqf_cli.cli`` is imported, its options are ``train-rec`` flags.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uqf_cli.rec.options import option_keys

if TYPE_CHECKING:
    from pathlib import Path

    from uqf_cli.data.dataset import Dataset
    from uqf_cli.files import SidTable

# name -> the module whose SPEC describes it (imported on first use), in the order the help lists them
BUILTIN = {
    "tiger": "uqf_cli.rec.tiger",
    "lcrec": "uqf_cli.rec.lcrec",
    "sasrec": "uqf_cli.rec.sasrec",
    "lightgcn": "uqf_cli.rec.lightgcn",
    "pop": "uqf_cli.rec.pop",
    "hybrid": "uqf_cli.rec.hybrid",
    "textknn": "uqf_cli.rec.textknn",
}
_registered: dict[str, Backbone] = {}


@dataclass(frozen=True)
class Backbone:
    """What uqf needs of one recommender.

    * ``options``: its options dataclass (a :class:`~uqf_cli.rec.options.BackboneOptions`): each
      ``opt()`` field is a ``train-rec`` flag, every field a key ``train`` reads;
    * ``train(dataset, sids, output, options, force) -> summary``: trains on the train split and writes
      a model directory through :mod:`uqf_cli.rec.base` (``options``: train-rec's option dict);
    * ``load(model_dir, device)``: the trained model, an object with ``recommend(histories, k,
      beam_size)`` (and ``recommend_scored`` with a ``score_name`` for ``uqf recommend``'s scores);
    * ``curve(meta)``: the per-epoch records ``{epoch, loss, valid_ndcg10}`` of a model directory's
      ``uqf_model.json`` (``None``: it records none, and ``--plot`` is refused);
    * ``panel``: the help panel of the options it declares itself;
    * ``inputs``: the option keys that name input files (outputs must not overwrite them).
    """

    name: str
    options: type
    train: Callable[[Dataset, SidTable | None, Path, dict[str, Any], bool], dict[str, Any]]
    load: Callable[..., Any]
    curve: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
    panel: str | None = None
    inputs: tuple[str, ...] = ()

    def check_uses(self, given: dict[str, Any]) -> None:
        """An option this backbone does not read is an error, not silently dropped."""
        from uqf_cli.core.errors import OptionError

        known = option_keys(self.options)
        unused = [k for k in given if k not in known]
        if unused:
            raise OptionError(f"--{unused[0].replace('_', '-')}", f"the {self.name} backbone does not use this "
                                                                  "option")


def register(backbone: Backbone) -> Backbone:
    """Add ``backbone`` (or replace the one of that name) for this process."""
    _registered[backbone.name] = backbone
    return backbone


def names() -> tuple[str, ...]:
    """Every backbone's name: the built-in ones, then those registered."""
    return tuple(dict.fromkeys([*BUILTIN, *_registered]))


def find(name: str) -> Backbone | None:
    """The backbone called ``name`` (``None`` when there is none)."""
    if name in _registered:
        return _registered[name]
    module = BUILTIN.get(name)
    return importlib.import_module(module).SPEC if module is not None else None


def get(name: str) -> Backbone:
    """The backbone called ``name``; an unknown name is an option error listing the known ones."""
    from uqf_cli.core.errors import OptionError

    found = find(name)
    if found is None:
        raise OptionError("--backbone", f"unknown backbone {name!r} (known: {', '.join(names())})")
    return found


def backbones() -> list[Backbone]:
    """Every backbone, in :func:`names` order (imports them all)."""
    return [get(name) for name in names()]
