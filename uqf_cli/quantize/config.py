"""The settings of ``uqf quantize`` in one dataclass (the CLI reads its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from uqf_cli.core.bounds import INT64_MAX, check_finite_fields
from uqf_cli.core.errors import OptionError

METHODS = ("rqvae", "rqkmeans")
DEDUP_MODES = ("level", "sinkhorn")


@dataclass
class QuantizeConfig:
    """Every knob of a quantization run (recorded in provenance and in the model file)."""

    method: str = "rqvae"
    levels: int = 3
    codebook_sizes: list[int] | None = None  # None: auto_codebook_size(items) on every level (`--codebook-size auto`)
    code_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [512, 256])
    epochs: int = 100
    warmup_epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-4
    beta: float = 0.25
    batch_size: int = 8192
    kmeans_iters: int = 50
    reinit_every: int = 25
    sinkhorn_eps: float | None = 0.001
    sinkhorn_iters: int = 50
    sinkhorn_levels: str = "rest"
    fit_sample: int = 8192
    dedup: str = "level"
    max_dedup_rounds: int = 20
    seed: int = 0

    def validate(self, n_items: int | None = None) -> None:
        """Reject impossible settings with an error that names the option."""
        check_finite_fields(self)
        if self.method not in METHODS:
            raise OptionError("--method", f"unknown method {self.method!r} (use {' or '.join(METHODS)})")
        if self.dedup not in DEDUP_MODES:
            raise OptionError("--dedup", f"unknown mode {self.dedup!r} (use {' or '.join(DEDUP_MODES)})")
        if self.levels < 1 or self.levels > 8:
            raise OptionError("--levels", "must be between 1 and 8")
        if self.codebook_sizes is not None and len(self.codebook_sizes) != self.levels:
            raise OptionError("--codebook-size", f"{len(self.codebook_sizes)} sizes given for {self.levels} levels")
        if self.codebook_sizes is not None and any(k < 2 for k in self.codebook_sizes):
            raise OptionError("--codebook-size", "every codebook needs at least 2 codes")
        if self.code_dim < 1:
            raise OptionError("--code-dim", "must be positive")
        if any(not 1 <= h <= INT64_MAX for h in self.hidden):
            raise OptionError("--hidden", "layer sizes must be positive 64-bit integers")
        if self.epochs < 0 or self.warmup_epochs < 0:
            raise OptionError("--epochs", "must not be negative")
        if self.sinkhorn_eps is not None and self.sinkhorn_eps <= 0:
            raise OptionError("--sinkhorn-eps", "must be positive")
        if self.sinkhorn_iters < 1:
            raise OptionError("--sinkhorn-iters", "must be positive")
        parse_sinkhorn_levels(self.sinkhorn_levels, self.levels)
        if self.fit_sample < 2:
            raise OptionError("--fit-sample", "must be at least 2")
        if n_items is not None and self.codebook_sizes is not None and max(self.codebook_sizes) > n_items:
            raise OptionError(
                "--codebook-size",
                f"codebook of {max(self.codebook_sizes)} codes is larger than the {n_items} items; "
                f"try --codebook-size auto ({auto_codebook_size(n_items)} here)",
            )


    def resolved(self, n_items: int) -> QuantizeConfig:
        """This config with ``--codebook-size auto`` replaced by the size :func:`auto_codebook_size` picks."""
        if self.codebook_sizes is not None:
            return self
        return replace(self, codebook_sizes=[auto_codebook_size(n_items)] * self.levels)


def auto_codebook_size(n_items: int) -> int:
    """The smallest power of two K with K * K >= n_items (at least 2): the first two levels can address every
    item and the deeper ones only split what they share. On Office (2,420 items) K = 64, which beat the
    fixed 256 on validation (benchmarks/results/office_cpu.md)."""
    k = 2
    while k * k < n_items:
        k *= 2
    return k


def parse_sinkhorn_levels(value: str, levels: int) -> list[int]:
    """0-based balanced levels: ``"rest"`` -> all but the first, ``"last"``, ``"all"``, ``"2,3"`` -> ``[1, 2]``.

    The default is ``rest``: level 1 follows the data density (its cells are the semantic groups),
    the finer levels are balanced (they only need to tell items apart).
    """
    text = value.strip().lower()
    if text == "rest":
        return list(range(1, levels))
    if text == "last":
        return [levels - 1]
    if text == "all":
        return list(range(levels))
    try:
        chosen = sorted({int(v) - 1 for v in text.split(",") if v.strip()})
    except ValueError as e:
        raise OptionError("--sinkhorn-levels", f"expected rest, last, all or numbers like 2,3; got {value!r}") from e
    if not chosen or chosen[0] < 0 or chosen[-1] >= levels:
        raise OptionError("--sinkhorn-levels", f"level numbers must be between 1 and {levels}, got {value!r}")
    return chosen


def parse_codebook_sizes(value: str, levels: int) -> list[int] | None:
    """``"auto"`` -> None (sized from the catalogue); ``"256"`` -> ``[256] * levels``; ``"256,256,128"`` ->
    per-level sizes (count must match)."""
    if value.strip().lower() == "auto":
        return None
    try:
        sizes = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as e:
        raise OptionError("--codebook-size", f"expected an int or a comma-separated list, got {value!r}") from e
    if not sizes:
        raise OptionError("--codebook-size", "no size given")
    if len(sizes) == 1:
        return sizes * levels
    if len(sizes) != levels:
        raise OptionError("--codebook-size", f"{len(sizes)} sizes given for --levels {levels}")
    return sizes


# --------------------------------------------------------------------------------------------
# k-means (k-means++ seeding, Lloyd iterations), deterministic given a generator
# --------------------------------------------------------------------------------------------
