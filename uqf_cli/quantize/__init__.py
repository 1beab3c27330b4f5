"""``uqf quantize``: item embeddings -> hierarchical semantic IDs (docs/quantize.md).

config (settings) -> kmeans and sinkhorn (codebook fitting, balanced assignment) -> model (residual
quantizer) -> training (RQ-VAE or residual k-means; letter: LETTER's extra terms) -> codes (coding,
statistics, dedup) -> stage (``quantize``); saved (save, load) and apply (``--apply``). The methods:
interface (``Quantizer``, ``Coder``), one module each (rqvae, rqkmeans, on residual) and registry.
"""

from uqf_cli.quantize.apply import apply_quantizer
from uqf_cli.quantize.codes import (
    collision_groups,
    collision_rate,
    dedup_by_level,
    dedup_by_sinkhorn,
    level_stats,
)
from uqf_cli.quantize.config import (
    DEDUP_MODES,
    QuantizeConfig,
    auto_codebook_size,
    parse_codebook_sizes,
    parse_sinkhorn_levels,
)
from uqf_cli.quantize.interface import Coder, Encoded, Quantizer, Setup
from uqf_cli.quantize.kmeans import kmeans, kmeans_plus_plus
from uqf_cli.quantize.letter import LetterConfig
from uqf_cli.quantize.model import ResidualQuantizer, encode
from uqf_cli.quantize.registry import QUANTIZERS, quantizer, register
from uqf_cli.quantize.saved import QUANTIZER_KIND, load_quantizer, save_quantizer
from uqf_cli.quantize.sinkhorn import balanced_kmeans, sinkhorn_assign, sinkhorn_code_bias
from uqf_cli.quantize.stage import QuantizeResult, lcrec_index_path, quantize
from uqf_cli.quantize.training import fit_code_biases, fit_quantizer, fit_sample_rows, train_rqvae

__all__ = [
    "DEDUP_MODES",
    "QUANTIZERS",
    "QUANTIZER_KIND",
    "Coder",
    "Encoded",
    "LetterConfig",
    "QuantizeConfig",
    "QuantizeResult",
    "Quantizer",
    "ResidualQuantizer",
    "Setup",
    "apply_quantizer",
    "auto_codebook_size",
    "balanced_kmeans",
    "collision_groups",
    "collision_rate",
    "dedup_by_level",
    "dedup_by_sinkhorn",
    "encode",
    "fit_code_biases",
    "fit_quantizer",
    "fit_sample_rows",
    "kmeans",
    "kmeans_plus_plus",
    "lcrec_index_path",
    "level_stats",
    "load_quantizer",
    "parse_codebook_sizes",
    "parse_sinkhorn_levels",
    "quantize",
    "quantizer",
    "register",
    "save_quantizer",
    "sinkhorn_assign",
    "sinkhorn_code_bias",
    "train_rqvae",
]
