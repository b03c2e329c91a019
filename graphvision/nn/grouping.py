"""Objects found in the region graph (SGDet): regions grouped into instances.

A region graph is an over-segmentation, so an object instance is a connected set of
regions. The scene-graph task scores every region-graph edge with the probability that its
two regions belong to the same instance (a learned head, trained from the instance masks)
and every region with the probability that it is background; instances are the connected
components of the kept edges over the foreground regions. Everything here is batched over
all the regions and edges of a batch of graphs (no loop over regions or images), and runs on
any device.
"""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter

#: How regions are grouped into instances: ``learned`` keeps the edges the grouping head
#: scores above the threshold; ``class`` (the baseline that needs no training of the
#: grouping) keeps the edges whose two regions have the same predicted class.
GROUPINGS = ("learned", "class")


def region_instances(
    index: torch.Tensor, weight: torch.Tensor, num_regions: int, min_weight: float = 0.5
) -> torch.Tensor:
    """The annotated object each region belongs to ``[N]``: the object covering most of the
    region if it covers at least ``min_weight`` of it, else ``-1`` (background).

    Shapes:
        index ``[2, K]`` (object, region), weight ``[K]`` -> ``[N]`` long.
    """
    best = scatter(weight, index[1], dim=0, dim_size=num_regions, reduce="max")
    owner = torch.full((num_regions,), -1, dtype=torch.long, device=weight.device)
    winner = (weight >= min_weight) & (weight == best[index[1]])
    owner[index[1][winner]] = index[0][winner]
    return owner


def same_instance_targets(edge_index: torch.Tensor, owner: torch.Tensor):
    """Targets of the grouping head: for every edge ``[E]`` whether both regions belong to
    the same object (float 0/1), and which edges are trained (at least one end on an
    object; background-background edges carry no instance information)."""
    a, b = owner[edge_index[0]], owner[edge_index[1]]
    return ((a == b) & (a >= 0)).float(), (a >= 0) | (b >= 0)


def connected_components(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Connected components of an undirected graph: each node's label is the smallest node
    index of its component ``[N]``.

    Min-label propagation along the edges (both directions) with pointer jumping; the
    number of rounds grows with the logarithm of the components' diameters.
    """
    label = torch.arange(num_nodes, device=edge_index.device)
    if edge_index.numel() == 0:
        return label
    src = torch.cat([edge_index[0], edge_index[1]])
    dst = torch.cat([edge_index[1], edge_index[0]])
    while True:
        new = label.scatter_reduce(0, dst, label[src], reduce="amin", include_self=True)
        new = torch.minimum(new, new[new])  # pointer jumping: follow the parent's label
        while True:
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, label):
            return label
        label = new


def group_regions(
    keep_edge: torch.Tensor, foreground: torch.Tensor, edge_index: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Instances as the connected components of the kept edges between foreground regions.

    Returns each region's instance ``[N]`` (``0..M-1``, ``-1`` for background regions) and
    the instance count ``M``. Instances never cross images (edges never do).
    """
    n = foreground.numel()
    keep = keep_edge & foreground[edge_index[0]] & foreground[edge_index[1]]
    component = connected_components(edge_index[:, keep], n)
    instance = torch.full((n,), -1, dtype=torch.long, device=foreground.device)
    if not bool(foreground.any()):
        return instance, 0
    ids, inverse = torch.unique(component[foreground], return_inverse=True)
    instance[foreground] = inverse
    return instance, int(ids.numel())


def rank_within(group: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Rank ``[M]`` of every item by descending ``score`` among the items of its group
    (0 = best), ties broken by position."""
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(group[order], stable=True)]  # by group, then by score
    counts = torch.bincount(group, minlength=int(group.max()) + 1 if group.numel() else 0)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device) - start[group[order]]
    return rank


def all_pairs(obj_batch: torch.Tensor) -> torch.Tensor:
    """Every ordered pair of distinct objects of the same image ``[2, R]``, by subject then
    object."""
    same = obj_batch[:, None] == obj_batch[None, :]
    same.fill_diagonal_(False)
    return same.nonzero().T


def box_memberships(
    segments: torch.Tensor, boxes: torch.Tensor, num_regions: int, min_inside: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regions of boxes given without masks: the regions lying mostly (``min_inside`` of
    their pixels) inside a box, weighted by that fraction; a box holding no such region
    takes the region with the largest share inside it.

    Shapes:
        segments ``[H, W]`` (one image), boxes ``[M, 4]`` (normalised x0, y0, x1, y1) ->
        index ``[2, K]`` (box, region), weight ``[K]``.
    """
    h, w = segments.shape
    ys = (torch.arange(h, device=segments.device, dtype=boxes.dtype) + 0.5) / h
    xs = (torch.arange(w, device=segments.device, dtype=boxes.dtype) + 0.5) / w
    inside = (
        (xs[None, None, :] >= boxes[:, 0, None, None])
        & (xs[None, None, :] < boxes[:, 2, None, None])
        & (ys[None, :, None] >= boxes[:, 1, None, None])
        & (ys[None, :, None] < boxes[:, 3, None, None])
    )  # (M, H, W)
    m = boxes.size(0)
    flat = segments.flatten()
    area = torch.bincount(flat, minlength=num_regions).clamp_min(1).to(boxes.dtype)  # (N,)
    cell = torch.arange(m, device=segments.device)[:, None] * num_regions + flat[None, :]
    counts = torch.bincount(cell[inside.flatten(1)], minlength=m * num_regions)
    share = counts.view(m, num_regions).to(boxes.dtype) / area  # (M, N)
    chosen = share >= min_inside
    best = share.argmax(dim=1)
    chosen[torch.arange(m, device=share.device), best] = True
    obj, reg = chosen.nonzero(as_tuple=True)
    return torch.stack([obj, reg]), share[obj, reg]
