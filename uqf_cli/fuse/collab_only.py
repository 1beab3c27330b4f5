"""``--method collab``: the collaborative embeddings unchanged; cold items, which have none, are left out
(a baseline; trains nothing)."""

from __future__ import annotations

from uqf_cli.fuse.interface import Fused, FuseInputs, Fusion


class CollabOnly(Fusion):
    name = "collab"
    summary = "the collaborative embeddings alone (cold items left out)"

    def fit(self, inputs: FuseInputs) -> Fused:
        data = inputs.data
        return Fused(data.collab.clone(), present=data.has_collab.clone(), left_out="cold items have no collab row")
