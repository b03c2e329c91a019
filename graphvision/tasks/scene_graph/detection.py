"""Finding objects in the region graph (SGDet): regions grouped into instances, which the
scene graph task's object and relation heads then label and relate."""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter

from graphvision.nn.grouping import all_pairs, group_regions, rank_within
from graphvision.nn.heads import _AREA


def obj_batch(batch) -> torch.Tensor:
    """Image index of every object ``[M]`` (``follow_batch``'s vector, or built for one graph)."""
    if "obj_label_batch" in batch:
        return batch.obj_label_batch
    return batch.obj_label.new_zeros(batch.obj_label.numel())


def instance_masks(region_instance: torch.Tensor, segments: torch.Tensor, det_batch: torch.Tensor):
    """Bool masks ``[M, H, W]`` of found instances at the working resolution: the pixels of
    their regions (``region_instance [N]``: instance of each region or -1; ``segments [B, H,
    W]`` batch-global region ids; ``det_batch [M]``: image of each instance)."""
    instance_map = region_instance[segments]  # (B, H, W)
    ids = torch.arange(det_batch.numel(), device=segments.device)
    return instance_map[det_batch] == ids[:, None, None]


@torch.no_grad()
def find_objects(task, out: dict, tokens: torch.Tensor, batch) -> dict[str, torch.Tensor]:
    """Objects found in the region graph by ``task`` (a
    :class:`~graphvision.tasks.SceneGraphTask`), then labelled and related by its object and
    relation heads exactly as annotated objects are.

    Regions whose background probability is below 0.5 are foreground; an edge between two
    foreground regions joins them when the grouping head's same-instance probability is
    at least ``edge_threshold`` (``grouping=class``: when their predicted classes agree);
    instances are the connected components. Each instance is an object whose regions
    have membership 1; its label is the object head's, its score the label's probability
    times the area-weighted foreground probability of its regions. Instances smaller than
    ``min_area`` are dropped, at most ``max_objects`` per image are kept (best first),
    and every ordered pair of them gets a relation.

    Returns ``det_region_instance [N]`` (each region's instance, -1 for none),
    ``det_batch [M]``, ``det_object_logits [M, C]``, ``det_label [M]``, ``det_score [M]``,
    ``det_box [M, 4]`` (normalised x0, y0, x1, y1: the union of its regions' boxes),
    ``det_rel_index [2, R]`` and ``det_relation_logits [R, P]``.
    """
    region_p = out["region_logits"].float().softmax(-1)
    src, dst = batch.edge_index
    foreground = region_p[:, -1] < 0.5
    if task.grouping == "learned":
        keep = out["edge_logits"].float().sigmoid() >= task.edge_threshold
    else:
        label = region_p[:, :-1].argmax(dim=1)
        keep = label[src] == label[dst]
    instance, m = group_regions(keep, foreground, batch.edge_index)
    regions = (instance >= 0).nonzero().flatten()
    owner = instance[regions]
    area_r = batch.x[regions, _AREA].float()
    area = scatter(area_r, owner, dim=0, dim_size=m, reduce="sum")
    fg_conf = scatter(
        area_r * (1 - region_p[regions, -1]), owner, dim=0, dim_size=m, reduce="sum"
    ) / area.clamp_min(1e-8)
    image = scatter(batch.batch[regions], owner, dim=0, dim_size=m, reduce="min")
    index = torch.stack([owner, regions])
    weight = torch.ones(regions.numel(), device=tokens.device)
    emb, geom, logits = task.object_head(tokens, batch.x, batch.segments, index, weight, image, m)
    prob, label = logits.float().softmax(-1).max(dim=-1)
    score = prob * fg_conf
    big = area >= task.min_area
    rank = rank_within(image, torch.where(big, score, -1.0))
    kept = (big & (rank < task.max_objects)).nonzero().flatten()
    renumber = torch.full((m + 1,), -1, dtype=torch.long, device=tokens.device)
    renumber[kept] = torch.arange(kept.numel(), device=tokens.device)
    det_batch = image[kept]
    pairs = all_pairs(det_batch)
    return {
        "det_region_instance": renumber[instance],  # instance -1 maps to the last slot
        "det_batch": det_batch,
        "det_object_logits": logits[kept],
        "det_label": label[kept],
        "det_score": score[kept],
        "det_box": geom[kept, 2:6],
        "det_rel_index": pairs,
        "det_relation_logits": task.relation_head(emb[kept], geom[kept], pairs),
    }
