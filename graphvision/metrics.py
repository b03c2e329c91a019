"""Scene-graph metrics: triplet Recall@K and mean Recall@K over predicates."""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter
from torchmetrics import Metric


def triplet_hits(rel_logits, obj_logits, rel_index, rel_label, obj_label, rel_batch, k: int):
    """Which ground-truth triplets are recalled in each image's top-``k`` predictions.

    Every ordered pair carries one ground-truth predicate and one predicted triplet
    (argmax subject class, argmax predicate, argmax object class), scored by the product
    of the three probabilities. A ground-truth triplet is recalled when its pair is among
    the image's ``k`` best-scored pairs and the predicted triplet equals it.

    Shapes:
        rel_logits ``[R, P]``, obj_logits ``[M, C]``, rel_index ``[2, R]``, rel_label ``[R]``,
        obj_label ``[M]``, rel_batch ``[R]`` -> hits ``[R]`` bool.
    """
    rel_p, rel_hat = rel_logits.float().softmax(-1).max(-1)
    obj_p, obj_hat = obj_logits.float().softmax(-1).max(-1)
    s, o = rel_index
    score = rel_p * obj_p[s] * obj_p[o]  # (R,)
    correct = (rel_hat == rel_label) & (obj_hat[s] == obj_label[s]) & (obj_hat[o] == obj_label[o])
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(rel_batch[order], stable=True)]  # by image, then by score
    counts = torch.bincount(rel_batch)
    start = torch.cumsum(counts, 0) - counts  # (B,)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device) - start[rel_batch[order]]
    return correct & (rank < k)


class RelationRecall(Metric):
    """Triplet Recall@K (mean over images) and mean Recall@K (per-predicate recall averaged
    over the images that have the predicate, then over predicates).

    ``compute()`` returns ``{"R@K": ..., "mR@K": ...}``.
    """

    full_state_update = False

    def __init__(self, num_predicates: int, k: int = 50, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k, self.num_predicates = k, num_predicates
        self.add_state("recall_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state(
            "pred_recall_sum",
            torch.zeros(num_predicates, dtype=torch.float64),
            dist_reduce_fx="sum",
        )
        self.add_state(
            "pred_images", torch.zeros(num_predicates, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, rel_logits, obj_logits, rel_index, rel_label, obj_label, rel_batch) -> None:
        if rel_label.numel() == 0:
            return
        hits = triplet_hits(
            rel_logits, obj_logits, rel_index, rel_label, obj_label, rel_batch, self.k
        )
        b = int(rel_batch.max()) + 1
        gt = torch.bincount(rel_batch, minlength=b).double()
        hit = scatter(hits.double(), rel_batch, dim=0, dim_size=b, reduce="sum")
        has = gt > 0
        self.recall_sum += (hit[has] / gt[has]).sum()
        self.images += has.sum()
        cell = rel_batch * self.num_predicates + rel_label  # (image, predicate)
        gt_p = torch.bincount(cell, minlength=b * self.num_predicates).double().view(b, -1)
        hit_p = scatter(
            hits.double(), cell, dim=0, dim_size=b * self.num_predicates, reduce="sum"
        ).view(b, -1)
        has_p = gt_p > 0
        self.pred_recall_sum += torch.where(has_p, hit_p / gt_p.clamp_min(1), 0.0).sum(0)
        self.pred_images += has_p.sum(0)

    def compute(self) -> dict[str, torch.Tensor]:
        recall = self.recall_sum / self.images.clamp_min(1)
        seen = self.pred_images > 0
        per_pred = self.pred_recall_sum[seen] / self.pred_images[seen]
        mean_recall = per_pred.mean() if seen.any() else torch.tensor(0.0, dtype=torch.float64)
        return {f"R@{self.k}": recall.float(), f"mR@{self.k}": mean_recall.float()}
