"""Old path of :mod:`uqf_cli.quantize.letter`."""

# transitional: removed at merge
from uqf_cli.quantize.letter import (
    LetterConfig,
    LetterRegulariser,
    alignment_loss,
    build_regulariser,
    collab_targets,
    diversity_loss,
)

__all__ = ["LetterConfig", "LetterRegulariser", "alignment_loss", "build_regulariser", "collab_targets",
           "diversity_loss"]
