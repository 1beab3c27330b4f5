"""``--method concat``: the L2-normalised text and collaborative rows side by side (a baseline; trains nothing)."""

from __future__ import annotations

from uqf_cli.fuse.inputs import concat_embeddings
from uqf_cli.fuse.interface import Fused, FuseInputs, Fusion


class Concat(Fusion):
    name = "concat"
    summary = "text and collaborative rows side by side"

    def fit(self, inputs: FuseInputs) -> Fused:
        return Fused(concat_embeddings(inputs.data))
