"""``--method rqvae``: an MLP autoencoder trained with residual codebooks on its latent (docs/quantize.md);
with ``--collab``, LETTER's collaborative and diversity terms join its loss (:mod:`uqf_cli.quantize.letter`)."""

from __future__ import annotations

from dataclasses import asdict

from uqf_cli.core.errors import OptionError
from uqf_cli.files import EmbeddingFile
from uqf_cli.quantize.config import QuantizeConfig
from uqf_cli.quantize.interface import Setup
from uqf_cli.quantize.letter import LetterConfig, build_regulariser
from uqf_cli.quantize.residual import ResidualMethod


class RqVae(ResidualMethod):
    """The RQ-VAE; its own options are LETTER's (:class:`LetterConfig`), on when ``--collab`` names a file."""

    name = "rqvae"
    summary = "trained MLP + residual codebooks"
    options = LetterConfig
    resumable = True

    def setup(self, emb: EmbeddingFile, cfg: QuantizeConfig, options: LetterConfig) -> Setup:
        """Without ``--collab`` a plain RQ-VAE (LETTER's other options are refused); with it, the LETTER
        regulariser, recorded in provenance as ``letter`` with the collab file as an input."""
        if not options.collab:
            if options != LetterConfig():
                raise OptionError("--collab", "the LETTER options (--w-collab, --w-diversity, --letter-*) need "
                                  "--collab")
            return Setup(options)
        options.validate(cfg.method, cfg.codebook_sizes)
        reg, summary = build_regulariser(options, emb, cfg.code_dim, cfg.codebook_sizes, cfg.seed)
        stats = {"letter": {**summary, "w_collab": options.w_collab, "w_diversity": options.w_diversity}}
        return Setup(options, parameters={"letter": asdict(options)}, inputs={"collab": options.collab},
                     stats=stats, state=reg)
