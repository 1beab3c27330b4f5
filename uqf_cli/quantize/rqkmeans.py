"""``--method rqkmeans``: residual k-means on the normalised embeddings, nothing trained (docs/quantize.md)."""

from __future__ import annotations

from uqf_cli.quantize.residual import ResidualMethod


class RqKMeans(ResidualMethod):
    """k-means (balanced on the ``--sinkhorn-levels``) on each level's residuals, level by level."""

    name = "rqkmeans"
    summary = "residual k-means, no training"
