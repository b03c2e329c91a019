"""Stage: prediction heads. Scene multi-label and image class from the CLS token; objects
as membership-weighted means of region tokens; relations from ordered object pairs."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

#: Columns of the region descriptor ``x`` used for object geometry (see regions.NODE_FEATURES).
_CX, _AREA, _BOX = 6, 8, slice(9, 13)
GEOMETRY_DIM = 8


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


def pool_objects(tokens: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                 num_objects: int) -> torch.Tensor:
    """Membership-weighted mean of region tokens per object.

    Shapes:
        tokens ``[N, d]``, index ``[2, K]`` (object, region), weight ``[K]`` -> ``[M, d]``.
    """
    obj, reg = index
    w = weight.to(tokens.dtype)[:, None]
    total = scatter(tokens[reg] * w, obj, dim=0, dim_size=num_objects, reduce="sum")
    norm = scatter(w, obj, dim=0, dim_size=num_objects, reduce="sum").clamp_min(1e-6)
    return total / norm  # (M, d)


def object_geometry(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor,
                    num_objects: int) -> torch.Tensor:
    """Object geometry derived from its regions (never from annotation boxes).

    Returns ``[M, 8]``: area-weighted centroid (2), union box of the regions it covers at
    least half of (4, all its regions if none), covered area fraction, and fill (area /
    box area).
    """
    obj, reg = index
    area = x[reg, _AREA] * weight  # (K,)
    total = scatter(area, obj, dim=0, dim_size=num_objects, reduce="sum").clamp_min(1e-8)
    centre = scatter(x[reg, _CX : _CX + 2] * area[:, None], obj, dim=0, dim_size=num_objects,
                     reduce="sum") / total[:, None]
    core = weight >= 0.5
    has_core = scatter(core.float(), obj, dim=0, dim_size=num_objects, reduce="sum") > 0
    use = core | ~has_core[obj]
    box = x[reg, _BOX]
    lo = scatter(box[:, :2].masked_fill(~use[:, None], 2.0), obj, dim=0, dim_size=num_objects, reduce="min")
    hi = scatter(box[:, 2:].masked_fill(~use[:, None], -1.0), obj, dim=0, dim_size=num_objects, reduce="max")
    box_area = ((hi - lo).clamp_min(0).prod(dim=1)).clamp_min(1e-8)
    fill = (total / box_area).clamp(0, 1.5)
    return torch.cat([centre, lo, hi, total[:, None], fill[:, None]], dim=1)  # (M, 8)


class SceneHead(nn.Module):
    """Multi-label scene logits ``[B, C]`` from the CLS vector ``[B, d]``."""

    def __init__(self, dim: int, num_categories: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_categories))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.proj(cls)


class ObjectHead(nn.Module):
    """Object embeddings ``[M, d]`` and class logits ``[M, C]`` from region tokens."""

    def __init__(self, dim: int, num_categories: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = mlp(dim + GEOMETRY_DIM, dim, dim, dropout)
        self.classify = nn.Sequential(nn.GELU(), nn.Linear(dim, num_categories))

    def forward(self, tokens, x, index, weight, num_objects):
        geom = object_geometry(x, index, weight, num_objects)  # (M, 8)
        emb = self.embed(torch.cat([pool_objects(tokens, index, weight, num_objects), geom], dim=1))
        return emb, geom, self.classify(emb)


class RelationHead(nn.Module):
    """Relation logits ``[R, P]`` for ordered pairs ``rel_index [2, R]`` of objects."""

    def __init__(self, dim: int, num_relations: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.classify = mlp(2 * dim + 3 * GEOMETRY_DIM, dim, num_relations, dropout)

    def forward(self, emb: torch.Tensor, geom: torch.Tensor, rel_index: torch.Tensor) -> torch.Tensor:
        s, o = rel_index
        pair = torch.cat([emb[s], emb[o], geom[s], geom[o], geom[s] - geom[o]], dim=1)
        return self.classify(pair)


class ClassHead(SceneHead):
    """Single-label image class logits ``[B, K]`` from the CLS vector."""
