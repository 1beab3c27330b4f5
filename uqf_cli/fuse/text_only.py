"""``--method text``: the text embeddings unchanged (a baseline; trains nothing)."""

from __future__ import annotations

from uqf_cli.fuse.interface import Fused, FuseInputs, Fusion


class TextOnly(Fusion):
    name = "text"
    summary = "the text embeddings alone"

    def fit(self, inputs: FuseInputs) -> Fused:
        return Fused(inputs.data.text.clone())
