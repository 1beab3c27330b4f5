"""The residual quantizer: input normalisation, optional MLP encoder/decoder, residual codebooks."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from uqf_cli.quantize.config import QuantizeConfig, parse_sinkhorn_levels
from uqf_cli.quantize.interface import Encoded
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

    def code(self, embeddings: torch.Tensor, batch_size: int = 8192) -> Encoded:
        """Codes, reconstruction errors and (lazily) the last level's distances, through :func:`encode`."""
        codes, errors, last_res = encode(self, embeddings, batch_size)
        book = self.codebooks[-1]
        return Encoded(codes, errors, lambda: sq_dist(last_res.detach().double(), book.detach().cpu().double()).cpu())

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


@torch.no_grad()
def encode(model: ResidualQuantizer, embeddings: torch.Tensor,
           batch_size: int = 8192) -> tuple[np.ndarray, dict[str, float], torch.Tensor]:
    """Codes [N, L] for raw embeddings, reconstruction errors, and the last level's residuals.

    Chunks of ``batch_size`` rows: the assignment is row-wise (nearest code minus the stored
    per-code bias), so memory stays ``O(batch_size x codebook)`` beyond the outputs.
    """
    dev = next(iter(model.buffers())).device
    codes, last_res = [], []
    sq_err = centred = latent_err = 0.0
    for i in range(0, embeddings.shape[0], batch_size):
        xb = embeddings[i : i + batch_size].to(dev, torch.float32)
        z = model.latent(model.normalise(xb))
        c, z_q, residuals = model.quantize(z)
        codes.append(c.cpu())
        last_res.append(residuals[-1].cpu())
        sq_err += float((model.reconstruct(z_q) - xb).pow(2).sum(dtype=torch.float64))
        centred += float((xb - model.input_mean).pow(2).sum(dtype=torch.float64))
        latent_err += float((z - z_q).pow(2).sum(dtype=torch.float64))
    n = embeddings.shape[0]
    errors = {"recon_mse": sq_err / n, "recon_rel": sq_err / max(centred, 1e-12), "latent_quant_mse": latent_err / n}
    return torch.cat(codes).numpy().astype(np.int64), errors, torch.cat(last_res)
