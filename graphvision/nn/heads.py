"""Stage: prediction heads. Scene multi-label and image class from the CLS token; objects
as membership-weighted means of region tokens; relations from ordered object pairs; a
per-region class (an auxiliary target that teaches region tokens what they belong to)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from graphvision.regions import NODE_FEATURES

#: Columns of the region descriptor ``x`` used for object geometry: centroid ``(cx, cy)``,
#: area fraction and box ``(x0, y0, x1, y1)``, looked up in :data:`NODE_FEATURES`.
_CX = NODE_FEATURES.index("cx")
_AREA = NODE_FEATURES.index("area")
_BOX = slice(NODE_FEATURES.index("x0"), NODE_FEATURES.index("y1") + 1)
GEOMETRY_DIM = 8


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


def pool_objects(
    tokens: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, num_objects: int
) -> torch.Tensor:
    """Membership-weighted mean of region tokens per object.

    Shapes:
        tokens ``[N, d]``, index ``[2, K]`` (object, region), weight ``[K]`` -> ``[M, d]``.
    """
    obj, reg = index
    w = weight.to(tokens.dtype)[:, None]
    total = scatter(tokens[reg] * w, obj, dim=0, dim_size=num_objects, reduce="sum")
    norm = scatter(w, obj, dim=0, dim_size=num_objects, reduce="sum").clamp_min(1e-6)
    return total / norm  # (M, d)


def object_geometry(
    x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, num_objects: int
) -> torch.Tensor:
    """Object geometry derived from its regions (never from annotation boxes).

    Returns ``[M, 8]``: area-weighted centroid (2), union box of the regions it covers at
    least half of (4, all its regions if none), covered area fraction, and fill (area /
    box area).
    """
    obj, reg = index
    area = x[reg, _AREA] * weight  # (K,)
    total = scatter(area, obj, dim=0, dim_size=num_objects, reduce="sum").clamp_min(1e-8)
    centre = (
        scatter(
            x[reg, _CX : _CX + 2] * area[:, None], obj, dim=0, dim_size=num_objects, reduce="sum"
        )
        / total[:, None]
    )
    core = weight >= 0.5
    has_core = scatter(core.float(), obj, dim=0, dim_size=num_objects, reduce="sum") > 0
    use = core | ~has_core[obj]
    box = x[reg, _BOX]
    lo = scatter(
        box[:, :2].masked_fill(~use[:, None], 2.0), obj, dim=0, dim_size=num_objects, reduce="min"
    )
    hi = scatter(
        box[:, 2:].masked_fill(~use[:, None], -1.0), obj, dim=0, dim_size=num_objects, reduce="max"
    )
    box_area = ((hi - lo).clamp_min(0).prod(dim=1)).clamp_min(1e-8)
    fill = (total / box_area).clamp(0, 1.5)
    return torch.cat([centre, lo, hi, total[:, None], fill[:, None]], dim=1)  # (M, 8)


def object_masks(
    segments: torch.Tensor,
    index: torch.Tensor,
    weight: torch.Tensor,
    obj_batch: torch.Tensor,
    num_objects: int,
    num_regions: int,
) -> torch.Tensor:
    """Each object's soft mask at the working resolution, painted from its regions: a pixel
    takes the membership of its region.

    Shapes:
        segments ``[B, H, W]`` (batch-global region ids), index ``[2, K]``, weight ``[K]``,
        obj_batch ``[M]`` -> ``[M, H, W]``; ``num_regions``: the batch's region count (a
        subsampled ``segments`` may miss thin regions).
    """
    dense = weight.new_zeros(num_objects, num_regions)
    dense[index[0], index[1]] = weight  # (M, N)
    pixels = segments[obj_batch].flatten(1)  # (M, H*W)
    return torch.gather(dense, 1, pixels).view(num_objects, *segments.shape[1:])


def object_shape(masks: torch.Tensor, geom: torch.Tensor, grid: int) -> torch.Tensor:
    """The object's region mask inside its region box, resampled to ``grid x grid``.

    Shapes:
        masks ``[M, H, W]``, geom ``[M, 8]`` (see :func:`object_geometry`) -> ``[M, grid * grid]``.
    """
    from torchvision.ops import roi_align

    m, h, w = masks.shape
    scale = masks.new_tensor([w, h, w, h])
    boxes = torch.cat(
        [
            torch.arange(m, device=masks.device, dtype=masks.dtype)[:, None],
            geom[:, 2:6].to(masks.dtype) * scale,
        ],
        dim=1,
    )  # (M, 5): image index, x0 y0 x1 y1
    return roi_align(masks[:, None], boxes, (grid, grid), aligned=True).flatten(1)  # (M, grid*grid)


class SceneHead(nn.Module):
    """Multi-label scene logits ``[B, C]`` from the CLS vector ``[B, d]``."""

    def __init__(self, dim: int, num_categories: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_categories))

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.proj(cls)


class ObjectHead(nn.Module):
    """Object embeddings ``[M, d]`` and class logits ``[M, C]``.

    An object is described by the membership-weighted mean of its region tokens, its
    geometry (:func:`object_geometry`) and, with ``shape_grid > 0``, the shape of its
    region mask on a ``shape_grid x shape_grid`` grid (:func:`object_shape`), painted on a
    map subsampled to about ``8 * shape_grid`` pixels a side.
    """

    def __init__(
        self, dim: int, num_categories: int, dropout: float = 0.0, shape_grid: int = 8
    ) -> None:
        super().__init__()
        self.shape_grid = shape_grid
        self.embed = mlp(dim + GEOMETRY_DIM + shape_grid**2, dim, dim, dropout)
        self.classify = nn.Sequential(nn.GELU(), nn.Linear(dim, num_categories))

    def forward(self, tokens, x, segments, index, weight, obj_batch, num_objects):
        geom = object_geometry(x, index, weight, num_objects)  # (M, 8)
        parts = [pool_objects(tokens, index, weight, num_objects), geom]
        if self.shape_grid:
            with torch.no_grad():  # built from data only (memberships, region boxes): no gradient
                step = max(1, segments.size(1) // (8 * self.shape_grid))
                masks = object_masks(
                    segments[:, ::step, ::step],
                    index,
                    weight,
                    obj_batch,
                    num_objects,
                    tokens.size(0),
                )
                parts.append(object_shape(masks, geom, self.shape_grid))  # (M, g*g)
        emb = self.embed(torch.cat(parts, dim=1))
        return emb, geom, self.classify(emb)


def region_targets(
    index: torch.Tensor,
    weight: torch.Tensor,
    obj_label: torch.Tensor,
    num_regions: int,
    background: int,
    min_weight: float = 0.5,
) -> torch.Tensor:
    """Per-region class: the category of the object covering most of the region if it covers
    at least ``min_weight`` of it, else ``background``.

    Shapes:
        index ``[2, K]``, weight ``[K]``, obj_label ``[M]`` -> ``[N]``.
    """
    best = scatter(weight, index[1], dim=0, dim_size=num_regions, reduce="max")
    target = torch.full((num_regions,), background, dtype=torch.long, device=weight.device)
    winner = (weight >= min_weight) & (weight == best[index[1]])
    target[index[1][winner]] = obj_label[index[0][winner]]
    return target


class RegionHead(nn.Module):
    """Per-region logits ``[N, C + 1]`` (the categories plus background) from region tokens."""

    def __init__(self, dim: int, num_categories: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_categories + 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)


class RelationHead(nn.Module):
    """Relation logits ``[R, P]`` for ordered pairs ``rel_index [2, R]`` of objects."""

    def __init__(self, dim: int, num_relations: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.classify = mlp(2 * dim + 3 * GEOMETRY_DIM, dim, num_relations, dropout)

    def forward(
        self, emb: torch.Tensor, geom: torch.Tensor, rel_index: torch.Tensor
    ) -> torch.Tensor:
        s, o = rel_index
        pair = torch.cat([emb[s], emb[o], geom[s], geom[o], geom[s] - geom[o]], dim=1)
        return self.classify(pair)


class ZeroShotHead(nn.Module):
    """Cosine logits against fixed text embeddings of the category names, with a learned
    temperature and bias: ``exp(t) * cos(W x, text_c) + b``. Categories never seen in
    training still get a logit through their name.

    Shapes:
        x ``[*, dim]`` -> ``[*, C]``; text ``[C, D]`` (L2-normalised, a buffer).
    """

    def __init__(self, dim: int, text: torch.Tensor) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, text.size(1)))
        self.register_buffer("text", text.float())
        self.log_scale = nn.Parameter(torch.tensor(2.3))  # exp(2.3) ~ 10
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = torch.nn.functional.normalize(self.proj(x), dim=-1)
        return self.log_scale.exp() * emb @ self.text.T + self.bias


class ClassHead(SceneHead):
    """Single-label image class logits ``[B, K]`` from the CLS vector."""


class GroupingHead(nn.Module):
    """Same-instance logits ``[E]`` of region-graph edges: whether the two regions of an
    edge belong to one object instance (SGDet's grouping, :mod:`graphvision.nn.grouping`).

    Symmetric in the two regions (sum and absolute difference of their tokens, absolute
    edge features), so both directions of an edge get the same logit: it is computed once
    per region pair and shared by the pair's edges.
    """

    def __init__(self, dim: int, edge_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.classify = mlp(2 * dim + edge_dim, dim, 1, dropout)

    def forward(
        self, tokens: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm(tokens)
        lo, hi = edge_index.min(dim=0).values, edge_index.max(dim=0).values
        key = lo * tokens.size(0) + hi  # one key per unordered region pair
        _, inverse = torch.unique(key, return_inverse=True)
        first = torch.full(
            (int(inverse.max()) + 1 if inverse.numel() else 0,),
            key.numel(),
            dtype=torch.long,
            device=key.device,
        )
        first = first.scatter_reduce(
            0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin"
        )  # one edge of each pair
        a, b = h[edge_index[0, first]], h[edge_index[1, first]]
        pair = torch.cat([a + b, (a - b).abs(), edge_attr[first].abs().to(h.dtype)], dim=1)
        return self.classify(pair).squeeze(1)[inverse]
