"""The settings of ``uqf quantize`` in one dataclass: each ``opt`` field is also one of its options."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from uqf_cli.core.bounds import INT64_MAX, check_finite_fields
from uqf_cli.core.config_field import Off, Spelled, check_ranges, opt
from uqf_cli.core.errors import OptionError

DEDUP_MODES = ("level", "sinkhorn")
SINKHORN_EPS = 0.001


def method_help() -> str:
    """``--method``'s help: every registered quantizer with its summary."""
    from uqf_cli.quantize.registry import QUANTIZERS

    return " | ".join(f"{name} ({q.summary})" for name, q in QUANTIZERS.items()) + "."


def show_codebook_sizes(sizes: list[int] | None) -> str:
    """How ``--codebook-size`` writes ``sizes``: ``auto`` for ``None``, else the sizes comma-separated."""
    return "auto" if sizes is None else show_ints(sizes)


def show_ints(values: list[int]) -> str:
    """``[512, 256]`` -> ``"512,256"`` (``--hidden``)."""
    return ",".join(map(str, values))


def parse_hidden(value: str, values: dict[str, Any] | None = None) -> list[int]:
    """``"512,256"`` -> ``[512, 256]`` (``--hidden``)."""
    try:
        return [int(h) for h in (v.strip() for v in value.split(",")) if h]
    except ValueError as e:
        raise OptionError("--hidden", f"expected comma-separated ints, got {value!r}") from e


CODEBOOK_SIZE = Spelled(str, show_codebook_sizes, lambda text, values: parse_codebook_sizes(text, values["levels"]))
HIDDEN = Spelled(str, show_ints, parse_hidden)


@dataclass
class QuantizeConfig:
    """Every knob of a quantization run (recorded in provenance and in the model file).

    The residual quantizers (``rqvae``, ``rqkmeans``) read all of them; another method reads the ones it
    needs (at least ``levels`` and ``codebook_sizes``) and declares its own in its options.
    """

    method: str = opt("rqvae", method_help)
    levels: int = opt(3, "Number of code levels.", ge=1, le=8)
    codebook_sizes: list[int] | None = opt(  # None: auto_codebook_size(items) on every level
        None, "Codes per level: auto (the smallest power of two K with K*K >= items), one int, or one per level "
        "(\"256,256,128\").", flag="--codebook-size", spelled=CODEBOOK_SIZE)
    code_dim: int = opt(32, "RQ-VAE latent dimension.", ge=1)
    hidden: list[int] = opt([512, 256], "RQ-VAE encoder hidden sizes (decoder mirrors).", spelled=HIDDEN)
    epochs: int = opt(100, "RQ-VAE training epochs (after warm-up).", ge=0)
    warmup_epochs: int = opt(30, "Autoencoder-only epochs before the k-means codebook initialisation.", ge=0)
    lr: float = opt(3e-3, "AdamW learning rate.", gt=0)
    weight_decay: float = 1e-4
    beta: float = opt(0.25, "Commitment weight.", ge=0)
    batch_size: int = opt(8192, "Items per step (full batch below it).", ge=1)
    kmeans_iters: int = 50
    reinit_every: int = 25
    sinkhorn_eps: float | None = opt(
        SINKHORN_EPS, f"Balanced (Sinkhorn) assignment epsilon on the --sinkhorn-levels (default {SINKHORN_EPS}); "
        "--no-sinkhorn for nearest codes.", gt=0, off=Off("--no-sinkhorn", "Plain nearest-code assignment on every "
                                                          "level."))
    sinkhorn_iters: int = opt(50, "Sinkhorn-Knopp iterations.", ge=1)
    sinkhorn_levels: str = opt("rest", "Balanced levels: rest (all but the first) | last | all | numbers (\"2,3\").",
                               before="sinkhorn_iters")
    fit_sample: int = opt(8192, "Fit on at most this many items (seeded sample); all items are coded.", ge=2)
    dedup: str = opt("level", "level (append a disambiguating code) | sinkhorn (re-assign the last code of "
                     "colliding items).")
    max_dedup_rounds: int = 20
    seed: int = 0

    def validate(self, n_items: int | None = None) -> None:
        """Reject impossible settings with an error that names the option (the stage calls it once, with the
        number of items)."""
        from uqf_cli.quantize.registry import QUANTIZERS

        check_finite_fields(self)
        if self.method not in QUANTIZERS:
            raise OptionError("--method", f"unknown method {self.method!r} (use {' or '.join(QUANTIZERS)})")
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
        check_ranges(self)

    def resolved(self, n_items: int) -> QuantizeConfig:
        """This config with ``--codebook-size auto`` replaced by the size :func:`auto_codebook_size` picks."""
        if self.codebook_sizes is not None:
            return self
        return replace(self, codebook_sizes=[auto_codebook_size(n_items)] * self.levels)


def auto_codebook_size(n_items: int) -> int:
    """The smallest power of two K with K * K >= n_items (at least 2): the first two levels can address every
    item and the deeper ones only split what they share. On Office (2,420 items) K = 64, which beat the
    fixed 256 on validation (benchmarks/results/archive/office_cpu.md)."""
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
