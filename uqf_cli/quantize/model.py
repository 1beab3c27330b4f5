"""The residual quantizer: input normalisation, optional MLP encoder/decoder, residual codebooks."""

from __future__ import annotations

import math

import torch
from torch import nn

from uqf_cli.quantize.config import QuantizeConfig, parse_sinkhorn_levels
from uqf_cli.quantize.kmeans import kmeans, sq_dist
from uqf_cli.quantize.sinkhorn import balanced_kmeans


def gather_codes(book: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``book[codes]`` with a deterministic backward: ``index_select`` accumulates the gradients of items
    sharing a code in a fixed order, advanced indexing in a thread-dependent one (docs/quantize.md)."""
    return book.index_select(0, codes)


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(dims) - 1):
        layers.append(nn.Linear(dims[k], dims[k + 1]))
        if k < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResidualQuantizer(nn.Module):
    """Residual codebooks over a latent; the latent is an MLP (rqvae) or the normalised input (rqkmeans)."""

    def __init__(self, input_dim: int, config: QuantizeConfig) -> None:
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_scale", torch.ones(()))
        if config.method == "rqvae":
            self.encoder: nn.Module = _mlp([input_dim, *config.hidden, config.code_dim])
            self.decoder: nn.Module = _mlp([config.code_dim, *reversed(config.hidden), input_dim])
            latent_dim = config.code_dim
        else:
            self.encoder = nn.Identity()
            self.decoder = nn.Identity()
            latent_dim = input_dim
        self.latent_dim = latent_dim
        self.codebooks = nn.ParameterList([nn.Parameter(torch.zeros(k, latent_dim)) for k in config.codebook_sizes])
        for level, k in enumerate(config.codebook_sizes):  # 0 = nearest code; set by fit_code_biases
            self.register_buffer(f"code_bias_{level}", torch.zeros(k))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_scale

    def fit_normalisation(self, x: torch.Tensor, chunk: int = 65536) -> None:
        """Mean and RMS norm of the centred input, in chunks (no full-size temporary)."""
        mean = x.sum(0, dtype=torch.float64) / x.shape[0]
        sq = sum(float((x[i : i + chunk].double() - mean).pow(2).sum()) for i in range(0, x.shape[0], chunk))
        self.input_mean.copy_(mean.float())
        self.input_scale.fill_(max(math.sqrt(sq / x.shape[0]), 1e-12))

    def code_bias(self, level: int) -> torch.Tensor:
        return getattr(self, f"code_bias_{level}")

    def latent(self, xn: torch.Tensor) -> torch.Tensor:
        return self.encoder(xn)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Greedy residual coding: ``(codes [N, L], z_q [N, d], residuals per level)``.

        Each level takes ``argmin_k ||r - C[k]||^2 - bias_k``; the biases are 0 (nearest code)
        except on balanced levels after :func:`fit_code_biases`. Row-wise, so it can run in chunks.
        """
        residual = z
        z_q = torch.zeros_like(z)
        codes, residuals = [], []
        for level, book in enumerate(self.codebooks):
            residuals.append(residual)
            dist = sq_dist(residual.detach(), book.detach())
            idx = (dist - self.code_bias(level)).argmin(1)
            chosen = gather_codes(book, idx)
            codes.append(idx)
            z_q = z_q + chosen
            residual = residual - chosen
        return torch.stack(codes, 1), z_q, residuals

    def reconstruct(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decoder output in *input* units."""
        return self.decoder(z_q) * self.input_scale + self.input_mean

    def init_codebooks(self, z: torch.Tensor, gen: torch.Generator) -> None:
        """k-means on each level's residuals, level by level (balanced k-means on balanced levels)."""
        cfg = self.config
        balanced = parse_sinkhorn_levels(cfg.sinkhorn_levels, cfg.levels) if cfg.sinkhorn_eps else []
        residual = z.detach()
        for level, book in enumerate(self.codebooks):
            if level in balanced:
                centres, assign = balanced_kmeans(residual, book.shape[0], cfg.kmeans_iters, gen,
                                                  cfg.sinkhorn_eps, cfg.sinkhorn_iters)
            else:
                centres, assign = kmeans(residual, book.shape[0], cfg.kmeans_iters, gen)
            with torch.no_grad():
                book.copy_(centres)
            residual = residual - centres[assign]
