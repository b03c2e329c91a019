"""Scene-graph metrics as the field reports them (torchmetrics, DDP-safe).

- :class:`SceneGraphRecall`: triplet Recall@K with graph constraint (``R@K``: one
  predicate per object pair) and without (``ngR@K``: every predicate of every pair ranked),
  mean Recall@K over predicates (``mR@K``, ``ng-mR@K``) and zero-shot Recall@K (``zR@K``,
  ``ng-zR@K``: ground-truth triplets whose (subject, predicate, object) classes never occur
  in the training split). A triplet's score is subject score x object score x predicate
  score. Given objects (``predcls``, ``sgcls``) match by identity; detected ones (``sgdet``)
  match a ground-truth triplet when the three labels agree and both the subject and the
  object box have IoU >= 0.5 with the ground truth's (Scene-Graph-Benchmark's rule).
- :class:`PresentLabelsAP`: macro average precision over the categories that have at least
  one positive in what was evaluated (COCO's and VOC's convention). torchmetrics' macro
  average counts a category without positives as AP 0, which on a small validation set
  lowers the mean by the share of categories it happens to miss.
- :class:`~graphvision.tasks.detection_metrics.DetectionEval` (its own module): object
  detection quality of the detected instances, by pycocotools' ``COCOeval``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torchmetrics import Metric
from torchmetrics.classification import MultilabelAveragePrecision
from torchmetrics.utilities import dim_zero_cat
from torchvision.ops import box_iou

log = logging.getLogger(__name__)


@dataclass
class SceneGraphs:
    """Objects and scored object pairs of a batch of images (predicted or annotated).

    Fields:
        labels ``[M]``, scores ``[M]`` (1 for given labels), boxes ``[M, 4]`` (normalised
        x0, y0, x1, y1), batch ``[M]`` (image of each object), pairs ``[2, R]`` (subject,
        object; global object indices), and either ``predicate_scores [R, P]`` (predicted)
        or ``predicates [R]`` (annotated).
    """

    labels: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    batch: torch.Tensor
    pairs: torch.Tensor
    predicate_scores: torch.Tensor | None = None
    predicates: torch.Tensor | None = None


def ranked_triplets(pred: SceneGraphs, rows: torch.Tensor, graph_constraint: bool, top: int):
    """The ``top`` best-scored predicted triplets among the pairs ``rows`` of one image:
    ``(pair index [T], predicate [T])``, best first."""
    s, o = pred.pairs[:, rows]
    obj_score = pred.scores[s] * pred.scores[o]  # (R_b,)
    p_scores = pred.predicate_scores[rows].float()  # (R_b, P)
    if graph_constraint:
        best, predicate = p_scores.max(dim=1)
        score, pair = obj_score * best, torch.arange(rows.numel(), device=rows.device)
    else:
        flat = (obj_score[:, None] * p_scores).flatten()
        pair = torch.arange(flat.numel(), device=rows.device) // p_scores.size(1)
        predicate = torch.arange(flat.numel(), device=rows.device) % p_scores.size(1)
        score = flat
    order = torch.argsort(score, descending=True, stable=True)[:top]
    return rows[pair[order]], predicate[order]


def first_hit_rank(
    pred: SceneGraphs,
    truth: SceneGraphs,
    image: int,
    graph_constraint: bool,
    top: int,
    match: str,
    iou_threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each ground-truth triplet of ``image``: the rank of the best-scored predicted
    triplet that matches it (``top`` if none does within the ``top`` best), and the triplets'
    row indices in ``truth``.

    ``match``: ``"identity"`` (the predicted objects are the annotated ones, same indices)
    or ``"iou"`` (labels agree and subject and object boxes have IoU >= ``iou_threshold``).
    """
    gt_rows = (truth.batch[truth.pairs[0]] == image).nonzero().flatten()
    rows = (pred.batch[pred.pairs[0]] == image).nonzero().flatten()
    rank = torch.full((gt_rows.numel(),), top, dtype=torch.long, device=gt_rows.device)
    if gt_rows.numel() == 0 or rows.numel() == 0:
        return rank, gt_rows
    pair, predicate = ranked_triplets(pred, rows, graph_constraint, top)  # (T,)
    ps, po = pred.pairs[:, pair]
    gs, go = truth.pairs[:, gt_rows]
    ok = predicate[:, None] == truth.predicates[gt_rows][None, :]  # (T, G)
    ok &= pred.labels[ps][:, None] == truth.labels[gs][None, :]
    ok &= pred.labels[po][:, None] == truth.labels[go][None, :]
    if match == "identity":
        ok &= (ps[:, None] == gs[None, :]) & (po[:, None] == go[None, :])
    else:
        pb, tb = pred.boxes.float(), truth.boxes.float()  # IoU of this image's pairs only
        ok &= box_iou(pb[ps], tb[gs]) >= iou_threshold
        ok &= box_iou(pb[po], tb[go]) >= iou_threshold
    ranks = torch.arange(pair.numel(), device=pair.device)[:, None].expand_as(ok)
    rank = torch.where(ok, ranks, top).amin(dim=0)
    return rank, gt_rows


class PresentLabelsAP(MultilabelAveragePrecision):
    """Average precision of each category, and their mean over the categories with a positive.

    ``compute()`` returns the macro mean over the categories that occur at least once in the
    evaluated targets (NaN when none does); with ``reduce=False`` it returns every category's
    AP instead, NaN for a category without a positive (torchmetrics would say 0).
    """

    def __init__(self, num_labels: int, reduce: bool = True, **kwargs):
        super().__init__(num_labels=num_labels, average=None, thresholds=None, **kwargs)
        self.reduce = reduce

    def compute(self) -> torch.Tensor:
        positives = (dim_zero_cat(self.target) == 1).sum(0)
        with warnings.catch_warnings():  # a category without positives is NaN below, not AP 0
            warnings.filterwarnings("ignore", message="No positive samples found in target")
            ap = super().compute()
        ap = torch.where(positives > 0, ap, torch.nan)
        return ap.nanmean() if self.reduce else ap


class SceneGraphRecall(Metric):
    """Triplet recall of one evaluation mode at several K, with and without graph
    constraint, per predicate, and on zero-shot triplets.

    Args:
        num_predicates: P.
        ks: the K of Recall@K.
        match: ``"identity"`` (``predcls``, ``sgcls``) or ``"iou"`` (``sgdet``).

    ``update(pred, truth, seen_triplets=None)``: ``seen_triplets`` (bool ``[C, P, C]``) are
    the (subject, predicate, object) classes of the training split; ``zR@K`` counts the
    ground-truth triplets outside it, and is reported once an update has passed them.

    Recall is averaged over images (those with a ground-truth triplet); ``mR@K`` averages
    each predicate's recall over the images holding it, then over predicates; ``zR@K``
    averages the recall of zero-shot triplets over the images holding one.
    ``compute()`` returns ``{"R@K", "ngR@K", "mR@K", "ng-mR@K"[, "zR@K", "ng-zR@K"]}``.
    """

    full_state_update = False
    CONSTRAINTS = ("", "ng")  # with and without graph constraint

    def __init__(
        self,
        num_predicates: int,
        ks: tuple[int, ...] = (20, 50, 100),
        match: str = "identity",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if match not in ("identity", "iou"):
            raise ValueError(f"match must be 'identity' or 'iou', got {match!r}")
        self.ks, self.match, self.num_predicates = tuple(sorted(ks)), match, num_predicates
        n_k, dt = len(self.ks), torch.float64
        for c in self.CONSTRAINTS:
            self.add_state(f"{c}recall", torch.zeros(n_k, dtype=dt), dist_reduce_fx="sum")
            self.add_state(
                f"{c}pred_recall", torch.zeros(n_k, num_predicates, dtype=dt), dist_reduce_fx="sum"
            )
            self.add_state(f"{c}zs_recall", torch.zeros(n_k, dtype=dt), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0.0, dtype=dt), dist_reduce_fx="sum")
        self.add_state("pred_images", torch.zeros(num_predicates, dtype=dt), dist_reduce_fx="sum")
        self.add_state("zs_images", torch.tensor(0.0, dtype=dt), dist_reduce_fx="sum")
        self.add_state("zs_known", torch.tensor(0.0, dtype=dt), dist_reduce_fx="sum")

    def update(
        self, pred: SceneGraphs, truth: SceneGraphs, seen_triplets: torch.Tensor | None = None
    ) -> None:
        zero_shot = seen_triplets is not None
        if zero_shot:
            self.zs_known += 1
        if truth.pairs.numel() == 0:
            return
        images = torch.unique(truth.batch[truth.pairs[0]]).tolist()
        ks = torch.tensor(self.ks, device=truth.pairs.device)
        p = self.num_predicates
        for image in images:  # one image at a time: its triplets are ranked among its own
            for c in self.CONSTRAINTS:
                rank, rows = first_hit_rank(pred, truth, image, c == "", max(self.ks), self.match)
                hit = (rank[None, :] < ks[:, None]).double()  # (n_k, G)
                getattr(self, f"{c}recall").add_(hit.mean(dim=1))
                predicate = truth.predicates[rows]
                count = torch.bincount(predicate, minlength=p).double()  # (P,)
                per = torch.zeros(len(self.ks), p, dtype=torch.float64, device=hit.device)
                per.index_add_(1, predicate, hit)
                getattr(self, f"{c}pred_recall").add_(per / count.clamp_min(1))
                if zero_shot:
                    s, o = truth.pairs[:, rows]
                    unseen = ~seen_triplets[truth.labels[s], predicate, truth.labels[o]]
                    if unseen.any():
                        getattr(self, f"{c}zs_recall").add_(hit[:, unseen].mean(dim=1))
            self.images += 1
            self.pred_images += (count > 0).double()
            if zero_shot and unseen.any():
                self.zs_images += 1

    def per_predicate(self, constraint: str = "") -> torch.Tensor:
        """Recall of every predicate ``[len(ks), P]`` (NaN where no image holds it)."""
        return getattr(self, f"{constraint}pred_recall") / self.pred_images.where(
            self.pred_images > 0, torch.nan
        )

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for c in self.CONSTRAINTS:
            recall = getattr(self, f"{c}recall") / self.images.clamp_min(1)
            mean = self.per_predicate(c).nanmean(dim=1).nan_to_num(0.0)
            zs = getattr(self, f"{c}zs_recall") / self.zs_images.clamp_min(1)
            for i, k in enumerate(self.ks):
                out[f"{c}R@{k}"] = recall[i].float()
                out[f"{c}{'-' if c else ''}mR@{k}"] = mean[i].float()
                if self.zs_known > 0:
                    out[f"{c}{'-' if c else ''}zR@{k}"] = zs[i].float()
        return out
