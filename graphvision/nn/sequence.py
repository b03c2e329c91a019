"""Stage: regions as a token sequence through a transformer.

Regions are put in raster order of their centroids (rows of ``1 / rows`` height, left to
right), get a 2-D sinusoidal encoding of the centroid, and a learned CLS token is
prepended. The one handoff from graph to sequence is :func:`to_sequence` (the layout of
PyG's ``to_dense_batch``); :func:`from_sequence` undoes it.

Every sequence stage implements :class:`SequenceStage`: ``forward(h, pos, batch,
return_attention)`` returns a :class:`SequenceOutput` ``(cls, tokens, attention)``, and
:meth:`~SequenceStage.extra_losses`, :attr:`~SequenceStage.loss_weights` and
:meth:`~SequenceStage.statistics` declare what the stage adds to the loss and to the logs.
Stages that read a token sequence derive from :class:`TokenSequenceStage`, which owns the
CLS token and the position projection.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


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
    """Node features to a padded, raster-ordered sequence: ``to_dense_batch``'s layout,
    written with one ``index_copy`` (whose gradient is one ``index_select``).

    Returns:
        ``tokens [B, T, d]``, ``mask [B, T]`` (True = real token), ``slot [N]``: where each
        node sits in ``tokens`` flattened to ``[B * T, d]``.
    """
    perm = raster_order(pos, batch, rows)  # (N,) nodes in sequence order
    counts = torch.bincount(batch)  # (B,)
    size, length = counts.numel(), int(counts.max()) if batch.numel() else 0
    first = torch.cumsum(counts, 0) - counts  # (B,) first node of each graph in perm order
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(perm.numel(), device=perm.device)  # (N,) place in perm order
    slot = batch * length + rank - first[batch]  # (N,)
    tokens = h.new_zeros(size * length, h.size(1)).index_copy(0, slot, h)  # (B*T, d)
    mask = torch.arange(length, device=h.device)[None] < counts[:, None]  # (B, T)
    return tokens.view(size, length, -1), mask, slot


def from_sequence(tokens: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_sequence`: ``[B, T, d]`` back to node order ``[N, d]``."""
    return tokens.reshape(-1, tokens.size(-1)).index_select(0, slot)


def to_sequence_with_cls(
    h: torch.Tensor,
    pos: torch.Tensor,
    batch: torch.Tensor,
    cls: torch.Tensor,
    pos_proj: nn.Module,
    rows: int = 16,
):
    """What every sequence stage reads: node features plus their projected 2-D position
    encoding, raster-ordered and padded (:func:`to_sequence`), the ``cls [1, 1, d]`` token
    in front.

    Returns:
        ``seq [B, 1+T, d]``, ``keep [B, 1+T]`` (True = a real token), ``slot [N]``.
    """
    h = h + pos_proj(sincos_2d(pos, h.size(1)))
    tokens, mask, slot = to_sequence(h, pos, batch, rows)  # (B, T, d), (B, T)
    seq = torch.cat([cls.expand(tokens.size(0), -1, -1), tokens], dim=1)  # (B, 1+T, d)
    keep = torch.cat([mask.new_ones(mask.size(0), 1), mask], dim=1)  # (B, 1+T)
    return seq, keep, slot


def cls_attention(maps, slot: torch.Tensor) -> torch.Tensor:
    """The CLS token's attention to every region, per layer, in node order.

    Shapes:
        maps: one head-averaged ``[B, 1+T, 1+T]`` per layer, slot ``[N]`` -> ``[layers, N]``.
    """
    return torch.stack([from_sequence(m[:, 0, 1:, None], slot)[:, 0] for m in maps])


class SelfAttention(nn.Module):
    """Multi-head self-attention over a padded sequence, on PyTorch's fused
    ``scaled_dot_product_attention``. The same function as ``nn.MultiheadAttention`` with
    one packed input projection (and its initialisation), without its reshapes and
    float-mask copies.

    Args:
        dim: token width (divisible by ``heads``).
        heads: attention heads.
        dropout: on the attention weights (default 0.0).

    Shapes:
        x ``[B, T, dim]``, keep ``[B, T]`` (True = a real token) -> ``[B, T, dim]``, plus with
        ``need_weights`` the head-averaged attention ``[B, T, T]``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        self.proj.reset_parameters()
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, need_weights: bool = False):
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads)  # (B, T, 3, H, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, hs)
        mask = keep[:, None, None, :]  # (B, 1, 1, T): which keys every query may attend to
        p = self.dropout if self.training else 0.0
        if not need_weights:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            return self.proj(out.transpose(1, 2).reshape(b, t, d))  # (B, T, d)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)  # (B, H, T, T)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        out = F.dropout(weights, p, self.training) @ v  # (B, H, T, hs)
        return self.proj(out.transpose(1, 2).reshape(b, t, d)), weights.mean(dim=1)


class EncoderLayer(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))`` (GELU);
    the function of ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu")``.

    Shapes:
        x ``[B, T, dim]``, keep ``[B, T]`` -> ``[B, T, dim]`` (and ``[B, T, T]`` weights).
    """

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, need_weights: bool = False):
        a = self.attn(self.norm1(x), keep, need_weights)
        a, weights = a if need_weights else (a, None)
        x = x + self.dropout(a)
        x = x + self.dropout(self.mlp(self.norm2(x)))
        return (x, weights) if need_weights else x


class SequenceOutput(NamedTuple):
    """What every sequence stage returns, whatever its flags.

    Shapes:
        cls ``[B, dim]``, tokens ``[N, dim]`` (node order), attention ``[layers, N]`` (the CLS
        token's attention to every region, per layer, averaged over heads) or ``None`` when
        not asked for.
    """

    cls: torch.Tensor
    tokens: torch.Tensor
    attention: torch.Tensor | None = None


class SequenceStage(nn.Module):
    """The interface of the sequence stage (``model/sequence=...``).

    ``forward(h [N, dim], pos [N, 2], batch [N], return_attention=False)`` returns a
    :class:`SequenceOutput`. A stage that adds a term to the training loss returns it from
    :meth:`extra_losses` (after each forward) with its weight in :attr:`loss_weights`, and
    what it wants logged from :meth:`statistics`.
    """

    #: weight of each loss :meth:`extra_losses` returns, by name
    loss_weights: dict[str, float] = {}

    def forward(self, h, pos, batch, return_attention: bool = False) -> SequenceOutput:
        raise NotImplementedError

    def extra_losses(self) -> dict[str, torch.Tensor]:
        """Loss terms of the last forward, by name (logged as ``<stage>/loss_<name>``)."""
        return {}

    def statistics(self) -> dict[str, torch.Tensor]:
        """Values of the last forward to log, by name (``<stage>/<name>``)."""
        return {}


class TokenSequenceStage(SequenceStage):
    """A sequence stage over raster-ordered region tokens with a learned CLS token in front.

    Owns the CLS token ``cls [1, 1, dim]`` and ``pos_proj``, the projection of the 2-D
    sin/cos position encoding added to every region token (:meth:`embed`). A subclass
    builds its own layers and ends its ``__init__`` with :meth:`reset_parameters`.

    Args:
        dim: token width.
        rows: raster rows used to order regions (default 16).
    """

    def __init__(self, dim: int, rows: int = 16) -> None:
        super().__init__()
        self.dim, self.rows = dim, rows
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_proj = nn.Linear(dim, dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.cls, std=0.02)

    def embed(self, h: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor):
        """``seq [B, 1+T, d]``, ``keep [B, 1+T]`` and ``slot [N]`` (:func:`to_sequence_with_cls`)."""
        return to_sequence_with_cls(h, pos, batch, self.cls, self.pos_proj, self.rows)

    def output(self, hidden: torch.Tensor, slot: torch.Tensor, maps=None) -> SequenceOutput:
        """The CLS vector, the region tokens in node order and, from per-layer head-averaged
        maps ``[B, 1+T, 1+T]``, the CLS attention.

        Shapes:
            hidden ``[B, 1+T, d]``, slot ``[N]`` -> ``SequenceOutput``.
        """
        attention = cls_attention(maps, slot) if maps is not None else None
        return SequenceOutput(hidden[:, 0], from_sequence(hidden[:, 1:], slot), attention)


class TransformerSequence(TokenSequenceStage):
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
        super().__init__(dim, rows)
        self.depth, self.heads = depth, heads
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, int(dim * mlp_ratio), dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def forward(self, h, pos, batch, return_attention: bool = False) -> SequenceOutput:
        """With ``return_attention``, ``attention [depth, N]`` is filled."""
        seq, keep, slot = self.embed(h, pos, batch)
        maps = [] if return_attention else None
        for layer in self.layers:
            if return_attention:
                seq, weights = layer(seq, keep, need_weights=True)  # weights (B, 1+T, 1+T)
                maps.append(weights)
            else:
                seq = layer(seq, keep)
        return self.output(self.norm(seq), slot, maps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, depth={self.depth}, heads={self.heads})"


class NoSequence(SequenceStage):
    """Ablation: no sequence stage; the CLS vector is the mean of the region features, and
    the "attention" is uniform over each image's regions (mean pooling)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim)

    def forward(self, h, pos, batch, return_attention: bool = False) -> SequenceOutput:
        from torch_geometric.utils import scatter

        h = self.norm(h)
        cls = scatter(h, batch, dim=0, reduce="mean")  # (B, d)
        if not return_attention:
            return SequenceOutput(cls, h)
        count = torch.bincount(batch).to(h.dtype)
        return SequenceOutput(cls, h, (1.0 / count[batch])[None])  # (1, N)
