"""Stage: regions as a token sequence through a transformer.

Regions are put in raster order of their centroids (rows of ``1 / rows`` height, left to
right), get a 2-D sinusoidal encoding of the centroid, and a learned CLS token is
prepended. The one handoff from graph to sequence is ``to_dense_batch`` in
:func:`to_sequence`; :func:`from_sequence` undoes it.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch_geometric.utils import to_dense_batch


def raster_order(pos: torch.Tensor, batch: torch.Tensor, rows: int = 16) -> torch.Tensor:
    """Permutation putting nodes in raster order within each graph (graphs stay in order).

    Shapes:
        pos ``[N, 2]`` (x, y) in ``[0, 1]``, batch ``[N]`` -> ``[N]``.
    """
    row = torch.clamp((pos[:, 1] * rows).floor(), 0, rows - 1)
    key = batch.double() * (rows + 1) + row.double() + pos[:, 0].double().clamp(0, 1) * 0.999
    return torch.argsort(key, stable=True)


def sincos_2d(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sinusoidal encoding: ``dim / 4`` frequencies each for sin/cos of x and y.

    Shapes:
        pos ``[N, 2]`` in ``[0, 1]`` -> ``[N, dim]`` (``dim`` divisible by 4).
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs a dim divisible by 4, got {dim}")
    freq = torch.arange(dim // 4, device=pos.device, dtype=torch.float32) / (dim // 4)
    omega = 1.0 / temperature**freq  # (dim/4,)
    angles = pos.float()[:, :, None] * 2 * math.pi * 64 * omega  # (N, 2, dim/4)
    return torch.cat([angles.sin(), angles.cos()], dim=2).flatten(1)  # (N, dim)


def to_sequence(h: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, rows: int = 16):
    """Node features to a padded, raster-ordered sequence.

    Returns:
        ``tokens [B, T, d]``, ``mask [B, T]`` (True = real token), ``perm [N]``.
    """
    perm = raster_order(pos, batch, rows)
    tokens, mask = to_dense_batch(h[perm], batch[perm])  # (B, T, d), (B, T)
    return tokens, mask, perm


def from_sequence(tokens: torch.Tensor, mask: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_sequence`: ``[B, T, d]`` back to node order ``[N, d]``."""
    out = torch.empty(perm.numel(), tokens.size(-1), dtype=tokens.dtype, device=tokens.device)
    out[perm] = tokens[mask]
    return out


@contextlib.contextmanager
def capture_attention(encoder: nn.TransformerEncoder):
    """Collects each layer's head-averaged attention ``[B, T, T]`` from the encoder's own
    ``nn.MultiheadAttention`` modules (asking them for their weights), not from a second
    implementation of attention. The fused inference fast path, which skips those
    modules, is switched off meanwhile."""
    maps: list[torch.Tensor] = []

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": True}

    def keep(module, args, kwargs, output):
        maps.append(output[1])

    handles = []
    for layer in encoder.layers:
        handles.append(layer.self_attn.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
        handles.append(layer.self_attn.register_forward_hook(keep, with_kwargs=True))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield maps
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()


class TransformerSequence(nn.Module):
    """Pre-norm transformer encoder over the region tokens plus a CLS token.

    Args:
        dim: token width.
        depth: encoder layers (default 2).
        heads: attention heads (default 4).
        mlp_ratio: feed-forward width / dim (default 2.0).
        dropout: default 0.0.
        rows: raster rows used to order regions (default 16).

    Shapes:
        h ``[N, dim]``, pos ``[N, 2]``, batch ``[N]`` -> cls ``[B, dim]``, tokens ``[N, dim]``.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        rows: int = 16,
    ) -> None:
        super().__init__()
        self.dim, self.depth, self.heads, self.rows = dim, depth, heads, rows
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_proj = nn.Linear(dim, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            int(dim * mlp_ratio),
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.cls, std=0.02)

    def forward(self, h, pos, batch, return_attention: bool = False):
        """Returns ``(cls, tokens)``, plus with ``return_attention`` the CLS token's attention
        to every region ``[depth, N]`` (per layer, averaged over heads)."""
        h = h + self.pos_proj(sincos_2d(pos, self.dim))
        tokens, mask, perm = to_sequence(h, pos, batch, self.rows)  # (B, T, d), (B, T)
        cls = self.cls.expand(tokens.size(0), -1, -1)  # (B, 1, d)
        seq = torch.cat([cls, tokens], dim=1)  # (B, 1+T, d)
        pad = torch.cat([mask.new_zeros(mask.size(0), 1), ~mask], dim=1)  # (B, 1+T) True = padding
        if not return_attention:
            seq = self.norm(self.encoder(seq, src_key_padding_mask=pad))
            return seq[:, 0], from_sequence(seq[:, 1:], mask, perm)
        with capture_attention(self.encoder) as maps:
            seq = self.norm(self.encoder(seq, src_key_padding_mask=pad))
        cls_to_regions = torch.stack(
            [from_sequence(m[:, 0, 1:, None], mask, perm)[:, 0] for m in maps]
        )
        return (
            seq[:, 0],
            from_sequence(seq[:, 1:], mask, perm),
            cls_to_regions,
        )  # (B, d), (N, d), (L, N)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, depth={self.depth}, heads={self.heads})"


class NoSequence(nn.Module):
    """Ablation: no sequence stage; the CLS vector is the mean of the region features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim)

    def forward(self, h, pos, batch, return_attention: bool = False):
        from torch_geometric.utils import scatter

        h = self.norm(h)
        cls = scatter(h, batch, dim=0, reduce="mean")
        if not return_attention:
            return cls, h
        count = torch.bincount(batch).to(h.dtype)
        return cls, h, (1.0 / count[batch])[None]  # mean pooling: uniform "attention" (1, N)
