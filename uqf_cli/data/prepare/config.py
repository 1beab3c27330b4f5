"""The options of ``uqf prepare`` in one dataclass: each ``opt`` field is also the command's option."""

from __future__ import annotations

from dataclasses import dataclass

from uqf_cli.core.bounds import SEED_MAX
from uqf_cli.core.config_field import check_ranges, opt
from uqf_cli.core.errors import OptionError
from uqf_cli.data.cold import check_share


@dataclass
class PrepareConfig:
    """How a source is read and cleaned; ``None`` leaves the choice to the source format (``FORMAT_DEFAULTS``)."""

    fmt: str = opt("auto", "auto | lcrec | recbole | recbole-benchmark | amazon2018 | amazon2023", flag="--format")
    kcore_k: int | None = opt(None, "Iterative k-core; 0 = off. Default: 5 for raw Amazon dumps, off otherwise.",
                              flag="--kcore", ge=0)
    dedup: bool | None = opt(None, "Keep only the first (user, item) interaction. Default: on for raw dumps and "
                             "RecBole atomic files, off for LC-Rec and benchmark files.", flag="--dedup/--no-dedup")
    max_history: int | None = opt(None, "Keep each user's last N interactions.", ge=1)
    cold_share: float | None = opt(None, "Cold-start protocol: this seeded share of the items (e.g. 0.05) loses its "
                                   "interactions in every train part (text, valid and test items kept). SOURCE may "
                                   "then be a prepared dataset directory.", gt=0, lt=1)
    cold_seed: int = opt(0, "Seed of the cold item draw.", ge=0, le=SEED_MAX)

    def validate(self) -> None:
        """Refuse values that cannot prepare a dataset (one line naming the option), before any file is read."""
        if self.cold_share is not None:
            check_share(self.cold_share)
        if self.kcore_k is not None and self.kcore_k < 0:
            raise OptionError("--kcore", "must be 0 (off) or more")
        if self.max_history is not None and self.max_history < 1:
            raise OptionError("--max-history", "must be at least 1")
        check_ranges(self)
