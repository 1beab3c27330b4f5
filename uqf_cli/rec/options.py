"""The training options the backbones share, declared once, and what every backbone's options class does.

As RecBole declares epochs, learning rate and batch size once (``overall.yaml``) and each model adds its
own few, :data:`SHARED` declares each shared training option once: its flag, help and allowed range.
A backbone's options dataclass picks the ones it reads, in its own field order and with its own default
(``epochs: int = shared.epochs(20)``), and declares its own few with
:func:`~uqf_cli.core.config_field.opt`. ``uqf train-rec`` makes one flag of each (``cli/train_rec.py``).

Why pick rather than inherit: each backbone records its options in provenance and ``uqf_model.json`` in
its field order, and the backbones read different subsets of the shared options (lcrec has no
``--dropout``); a base class would put the shared fields first and give each backbone all of them.
"""

from __future__ import annotations

import typing
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from uqf_cli.core.bounds import Range, check_finite_fields
from uqf_cli.core.config_field import check_ranges, flag_of, opt

SHARED_PANEL = "Training (tiger, lcrec, sasrec, lightgcn: each uses the ones it knows)"
RUN_OPTIONS = ("seed", "device", "resume")  # train-rec's run options: accepted by every backbone

OptionsT = TypeVar("OptionsT", bound="BackboneOptions")


@dataclass(frozen=True)
class SharedOption:
    """One option several backbones read: flag, help, panel and allowed range, declared once.

    Calling it with a backbone's default gives that backbone's field; ``ge``/``gt``/``le``/``lt`` given
    there replace a declared bound for that backbone alone (the flag itself accepts the declared range).
    """

    flag: str
    help: str
    panel: str | None = SHARED_PANEL
    allowed: Range = field(default_factory=Range)
    kind: type | None = None  # the type the flag parses, where it differs from the field's (a path kept as text)

    def __call__(self, default: Any, **own_bounds: float) -> Any:
        bounds = {k: getattr(self.allowed, k) for k in ("ge", "gt", "le", "lt")}
        made: Field = opt(default, self.help, flag=self.flag, panel=self.panel, **{**bounds, **own_bounds})
        return field(default=made.default, metadata={**made.metadata, "shared": self, "kind": self.kind})


def shared_option(flag: str, help: str, panel: str | None = SHARED_PANEL, kind: type | None = None,
                  **bounds: float) -> SharedOption:
    """Declare a shared option (see :class:`SharedOption`)."""
    return SharedOption(flag, help, panel, Range(**bounds), kind)


epochs = shared_option("--epochs", "Training epochs, a whole number; lcrec also takes a fraction such as 0.5", gt=0)
batch_size = shared_option("--batch-size", "Batch size per device", ge=1)
lr = shared_option("--lr", "Peak AdamW learning rate", gt=0)
weight_decay = shared_option("--weight-decay", "Weight decay", ge=0)
max_history = shared_option("--max-history", "History items per sample", ge=1)
warmup_ratio = shared_option("--warmup-ratio", "Warmup as a share of all planned steps; tiger: overrides "
                             "--warmup-steps when > 0", ge=0, lt=1)
decay_epochs = shared_option("--decay-epochs", "Epochs over which the learning rate decays (warmup included; at most "
                             "--epochs); the steps after it train at the --min-lr-ratio floor until early stopping. "
                             "lcrec: a fraction too; unset, the decay spans the whole run; set, early stopping counts "
                             "only the evaluations after the decay", gt=0)
min_lr_ratio = shared_option("--min-lr-ratio", "Floor of the decay as a share of --lr, kept after --decay-epochs so "
                             "that early stopping, not the schedule, ends training; 0 = decay to zero", ge=0, le=1)
eval_beam = shared_option("--eval-beam", "tiger, lcrec: beam size of the validation search", ge=10)
eval_every = shared_option("--eval-every", "Validate every N epochs", ge=1)
eval_users = shared_option("--eval-users", "tiger, lcrec: valid users sampled for early stopping (0 = all)",
                           ge=0)
patience = shared_option("--patience", "Evaluations without improvement before stopping", ge=0)
d_model = shared_option("--d-model", "Hidden size; lightgcn: embedding size", ge=1)
num_layers = shared_option("--num-layers", "tiger: encoder layers; sasrec: blocks; lightgcn: propagation layers",
                           ge=1)
dropout = shared_option("--dropout", "Dropout", ge=0, lt=1)

# The shared training options, in the order ``uqf train-rec --help`` lists them.
SHARED = (epochs, batch_size, lr, weight_decay, max_history, warmup_ratio, decay_epochs, min_lr_ratio, eval_beam,
          eval_every, eval_users, patience, d_model, num_layers, dropout)

# Read by a few backbones, listed with the first of them that reads it (hybrid's panel).
item_emb = shared_option("--item-emb", "hybrid, textknn: item embeddings file (aligned by id; e.g. the UQF "
                         "unified.st, or the text .st)", panel=None, kind=Path)


def option_key(f: Field) -> str:
    """The key of a field's option in train-rec's option dict: its flag's name (``--d-model``: ``d_model``; a
    pair ``--x/--no-x``: ``x``)."""
    return flag_of(f).split("/", 1)[0].removeprefix("--").replace("-", "_")


def option_keys(cls: type) -> tuple[str, ...]:
    """Every key a backbone's options class reads: its field names, its flags' names and the run options."""
    names = [f.name for f in fields(cls)]
    return tuple(dict.fromkeys([*names, *(option_key(f) for f in fields(cls) if f.metadata.get("option")),
                                *RUN_OPTIONS]))


def option_values(cls: type, options: dict[str, Any] | None) -> dict[str, Any]:
    """The field values given in ``options`` (by field or flag name; a field name wins; ``None``: not given)."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    names = {f.name for f in fields(cls)}
    by_flag = {option_key(f): f.name for f in fields(cls) if f.metadata.get("option") and option_key(f) != f.name}
    values = {by_flag[k]: v for k, v in given.items() if k in by_flag}
    values.update({k: v for k, v in given.items() if k in names})
    return values


def value_type(cls: type, name: str) -> type:
    """The type a field's option takes: its declared ``kind``, else the first of its annotation's types that is
    not None."""
    declared = next(f for f in fields(cls) if f.name == name).metadata.get("kind")
    if declared is not None:
        return declared
    hint = typing.get_type_hints(cls)[name]
    kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    return kind if kind in (int, float, bool, str, Path) else str


class BackboneOptions:
    """What every backbone's options dataclass shares: built from train-rec's option dict, checked once."""

    @classmethod
    def from_dict(cls: type[OptionsT], options: dict[str, Any] | None) -> OptionsT:
        """Known keys override defaults; ``None`` values and other keys (another backbone's, ``resume``) are
        ignored. The result is checked (:meth:`validate`)."""
        opts = cls(**option_values(cls, options))
        opts.validate()
        return opts

    def validate(self) -> None:
        """Finite floats, every option in its declared range, then the backbone's own :meth:`check`."""
        check_finite_fields(self, flag_of)
        check_ranges(self)
        self.check()

    def check(self) -> None:
        """What a range cannot say (choices, combinations); nothing by default."""

    def params(self) -> dict[str, Any]:
        """The options a model directory records (all but the device)."""
        return {k: v for k, v in asdict(self).items() if k != "device"}  # type: ignore[call-overload]
