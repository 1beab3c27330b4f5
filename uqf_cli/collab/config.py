"""Hyper-parameters of ``uqf train-gcn``.

Kept free of torch_geometric (seconds to import), since the CLI reads the defaults for every command.
"""

from __future__ import annotations

from dataclasses import dataclass

from uqf_cli.core.config_field import check_ranges, opt


@dataclass
class GcnConfig:
    """Hyper-parameters of one training run; each ``opt`` field is also an option of ``uqf train-gcn``."""

    layers: int = opt(3, "Propagation layers.", ge=1)
    dim: int = opt(64, "Embedding size.", ge=1)
    reg: float = opt(1e-4, "L2 weight on the batch's ego embeddings.", ge=0)
    lr: float = opt(1e-2, "Adam learning rate.", gt=0)
    batch_size: int = opt(4096, "(user, positive, negative) triples per step.", ge=1)
    epochs: int = opt(300, "Maximum epochs.", ge=1)
    eval_every: int = opt(2, "Validate every N epochs.", ge=1)
    patience: int = opt(10, "Stop after N validations without a better Recall@K (0: never).", ge=0)
    k: int = opt(20, "Cut-off K of Recall@K / NDCG@K.", ge=1)
    init_std: float = opt(0.01, "Std of the normal initial ego embeddings.", gt=0)
    seed: int = 0
    device: str = "auto"
    include_valid: bool = opt(False, "Train on train + valid items (final fit): no validation, exactly --epochs "
                              "epochs.")

    def validate(self) -> None:
        """Raise :class:`OptionError` for values that cannot train (before any heavy work): every field's
        declared range, finite and within 64 bits."""
        check_ranges(self)
