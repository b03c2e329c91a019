"""Scene graphs: which categories the image holds, its objects' classes and the relation of
every ordered pair of objects, plus each region's class (an auxiliary target), and objects
found in the region graph itself (SGDet).

Three evaluation modes, the field's names: ``predcls`` (objects and their labels given,
predicates predicted), ``sgcls`` (objects given; labels and predicates predicted) and
``sgdet`` (nothing given: the objects are found by grouping regions,
:mod:`graphvision.nn.grouping`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from graphvision.data.objects import unpack_masks
from graphvision.nn.grouping import (
    GROUPINGS,
    region_instances,
    same_instance_targets,
)
from graphvision.nn.heads import (
    GroupingHead,
    ObjectHead,
    RegionHead,
    RelationHead,
    SceneHead,
    ZeroShotHead,
    region_targets,
)
from graphvision.regions import EDGE_FEATURES
from graphvision.tasks.base import Task
from graphvision.tasks.detection_metrics import DetectionEval
from graphvision.tasks.metrics import PresentLabelsAP, SceneGraphRecall, SceneGraphs
from graphvision.tasks.scene_graph.detection import find_objects, instance_masks, obj_batch

log = logging.getLogger(__name__)

#: metric-name prefix of each mode's recall (``sgcls`` keeps the names training always had)
MODE_PREFIX = {"predcls": "predcls", "sgcls": "rel", "sgdet": "sgdet"}


class SceneGraphTask(Task):
    """Scene labels (multi-label), objects, relations and regions, and objects found by
    grouping regions.

    Heads: scene logits ``[B, C]`` from the CLS vector; per-region logits ``[N, C + 1]``
    (the last column is background); objects (the membership-weighted mean of their region
    tokens, their geometry and region-mask shape) ``[M, C]``; relations of the ordered
    object pairs ``rel_index`` ``[R, P]``; same-instance logits of the region-graph edges
    ``[E]`` (the grouping head).

    Args:
        info, dim, dropout, loss_weights: see :class:`~graphvision.tasks.base.Task`; losses
            ``scene``, ``objects``, ``relations``, ``regions`` and ``grouping``.
        shape_grid: side of the object region-mask grid fed to the object head (0: off).
        zero_shot: score scene and object categories by the cosine between a projected
            embedding and the text embedding of their names.
        text_encoder: the local checkpoint that embeds the names (None: the packaged MiniLM).
        recall_k: the K of the triplet recalls (``rel_R@K``, ``rel_ngR@K``, ``rel_mR@K``, ...).
        sgdet: finding objects: ``every`` (validate ``sgdet`` every n epochs and at the last,
            0: only outside training), ``grouping`` (``learned`` or ``class``, see
            :data:`~graphvision.nn.grouping.GROUPINGS`), ``edge_threshold`` (same-instance
            probability above which an edge joins its regions), ``max_objects`` (per image,
            best-scored first), ``min_area`` (smallest instance, a fraction of the image).

    Categories in ``info["unseen"]`` are no training target (losses see only the seen ones)
    and are reported apart: ``scene_map_seen``, ``scene_map_unseen``, ``object_acc_seen``,
    ``object_acc_unseen``.
    """

    follow_batch = ("obj_label", "rel_label")
    loss_names = ("scene", "objects", "relations", "regions", "grouping")
    progress_bar = ("scene_map", "object_acc", "rel_acc")
    modes = ("predcls", "sgcls", "sgdet")
    eval_options = ("grouping",)
    takes_boxes = True

    def __init__(
        self,
        info: dict,
        dim: int,
        dropout: float,
        loss_weights: dict[str, float],
        shape_grid: int,
        zero_shot: bool,
        text_encoder: str | None,
        recall_k: list[int] | int,
        sgdet: dict,
    ) -> None:
        super().__init__(info, dim, dropout, loss_weights)
        hint = "use a scene-graph dataset (data=synthetic, data=coco) or model/task=classification"
        self.categories = self.require("categories", hint)
        self.predicates = self.require("predicates", hint)
        c, p = len(self.categories), len(self.predicates)
        self.recall_k = tuple(sorted({recall_k} if isinstance(recall_k, int) else set(recall_k)))
        self.detect_every = int(sgdet["every"])
        self.grouping = sgdet["grouping"]
        if self.grouping not in GROUPINGS:
            raise ValueError(f"sgdet.grouping must be one of {GROUPINGS}, got {self.grouping!r}")
        self.edge_threshold = float(sgdet["edge_threshold"])
        self.max_objects = int(sgdet["max_objects"])
        self.min_area = float(sgdet["min_area"])
        self.scene_head = SceneHead(dim, c)
        self.region_head = RegionHead(dim, c)
        self.object_head = ObjectHead(dim, c, dropout, shape_grid)
        self.relation_head = RelationHead(dim, p, dropout)
        self.grouping_head = GroupingHead(dim, len(EDGE_FEATURES), dropout)
        if zero_shot:  # scene and object logits against the category names' text embeddings
            from graphvision.nn.text import encode_texts

            text = encode_texts(self.categories, text_encoder)
            self.scene_head = ZeroShotHead(dim, text)
            self.object_head.classify = nn.Sequential(nn.GELU(), ZeroShotHead(dim, text))
        unseen = set(info.get("unseen") or [])
        self.has_unseen = bool(unseen)
        self.register_buffer("seen", torch.tensor([name not in unseen for name in self.categories]))
        # (subject, predicate, object) classes of the training split, for zero-shot recall;
        # set when training starts (:meth:`fit_start`) and kept in checkpoints
        self.register_buffer("train_triplets", torch.zeros(c, p, c, dtype=torch.bool))

    def fit_start(self, datamodule) -> None:
        """Records the training split's triplet classes (for ``zR@K``)."""
        dataset = getattr(datamodule, "datasets", {}).get("train")
        if dataset is None:
            return
        self.train_triplets.copy_(training_triplets(dataset, self.train_triplets.shape))
        log.info(
            "%d (subject, predicate, object) classes occur in the training split",
            int(self.train_triplets.sum()),
        )

    def configure_eval(self, modes=None, grouping: str | None = None) -> tuple[str, ...]:
        """The modes asked for; ``grouping`` (``learned`` or ``class``) replaces the trained
        way of grouping regions into objects for ``sgdet``."""
        modes = super().configure_eval(modes)
        if grouping is not None:
            if grouping not in GROUPINGS:
                raise ValueError(f"grouping={grouping}: choose among {list(GROUPINGS)}")
            self.grouping = grouping
        return modes

    def detects(self, modes) -> bool:
        return "sgdet" in modes

    def metric_mode(self, name: str) -> str | None:
        """``predcls_*`` and ``sgdet_*`` are theirs, the triplet recalls ``rel_*R@K`` are
        ``sgcls``'s; every other metric (scene, objects, regions, ...) belongs to all."""
        metric = name.split("/", 1)[-1]
        for mode, prefix in MODE_PREFIX.items():
            if metric.startswith(f"{prefix}_") and (mode != "sgcls" or "R@" in metric):
                return mode
        return None

    def needs_training_split(self) -> bool:
        """A checkpoint saved before training started records no training triplets
        (``zR@K`` needs them)."""
        return not bool(self.train_triplets.any())

    def forward(self, cls, tokens, batch, detect: bool = False) -> dict[str, torch.Tensor]:
        """Every head's logits; ``detect`` adds the objects found in the region graph
        (``det_*``, see :meth:`detect`)."""
        out = {"scene_logits": self.scene_head(cls), "region_logits": self.region_head(tokens)}
        out["edge_logits"] = self.grouping_head(tokens, batch.edge_index, batch.edge_attr)
        emb, geom, out["object_logits"] = self.object_head(
            tokens,
            batch.x,
            batch.segments,
            batch.obj_region_index,
            batch.obj_region_weight,
            obj_batch(batch),
            int(batch.obj_label.numel()),
        )
        out["relation_logits"] = self.relation_head(emb, geom, batch.rel_index)
        if detect:
            out.update(self.detect(out, tokens, batch))
        return out

    def detect(self, out: dict, tokens: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """Objects found in the region graph, labelled and related by this task's heads
        (:func:`~graphvision.tasks.scene_graph.detection.find_objects`)."""
        return find_objects(self, out, tokens, batch)

    def attribution_logits(self, out):
        return out["scene_logits"]

    def region_target(self, out: dict, batch) -> torch.Tensor:
        """Each region's class ``[N]``: its object's category, or background (``C``)."""
        return region_targets(
            batch.obj_region_index,
            batch.obj_region_weight,
            batch.obj_label,
            batch.num_nodes,
            background=out["region_logits"].size(1) - 1,
        )

    def losses(self, out, batch) -> dict[str, torch.Tensor]:
        # categories in info["unseen"] are no training target: the losses see only the seen
        # ones (their objects, their regions, their scene columns, their instances)
        seen = self.seen
        losses = {
            "scene": F.binary_cross_entropy_with_logits(
                out["scene_logits"][:, seen], batch.y[:, seen]
            )
        }
        region_target = self.region_target(out, batch)
        region_unseen = (region_target < seen.numel()) & ~seen[
            region_target.clamp(max=seen.numel() - 1)
        ]
        losses["regions"] = F.cross_entropy(
            out["region_logits"], region_target.masked_fill(region_unseen, -100)
        )
        keep = seen[batch.obj_label]
        if keep.any():
            remap = torch.cumsum(seen.long(), 0) - 1  # category index -> index among the seen
            losses["objects"] = F.cross_entropy(
                out["object_logits"][keep][:, seen], remap[batch.obj_label[keep]]
            )
        if batch.rel_label.numel():
            losses["relations"] = F.cross_entropy(out["relation_logits"], batch.rel_label)
        owner = region_instances(batch.obj_region_index, batch.obj_region_weight, batch.num_nodes)
        target, trained = same_instance_targets(batch.edge_index, owner)
        if self.has_unseen:  # an unseen object's extent is no training target either
            hidden = (owner >= 0) & ~seen[batch.obj_label[owner.clamp_min(0)]]
            trained &= ~(hidden[batch.edge_index[0]] | hidden[batch.edge_index[1]])
        if trained.any():
            losses["grouping"] = F.binary_cross_entropy_with_logits(
                out["edge_logits"][trained].float(), target[trained]
            )
        return losses

    # -- metrics ----------------------------------------------------------------------------
    def make_metrics(self) -> nn.ModuleDict:
        c, p = len(self.categories), len(self.predicates)
        metrics = nn.ModuleDict(
            {
                "scene_map": PresentLabelsAP(c),
                "region_acc": MulticlassAccuracy(num_classes=c + 1, average="micro"),
                "object_acc": MulticlassAccuracy(num_classes=c, average="micro"),
                "rel_acc": MulticlassAccuracy(num_classes=p, average="micro"),
                "grouping_acc": MulticlassAccuracy(num_classes=2, average="micro"),
                "predcls_recall": SceneGraphRecall(p, self.recall_k, "identity"),
                "sgcls_recall": SceneGraphRecall(p, self.recall_k, "identity"),
                "sgdet_recall": SceneGraphRecall(p, self.recall_k, "iou"),
                "sgdet_detection": DetectionEval(c),
            }
        )
        if self.has_unseen:  # zero-shot evaluation: seen and unseen categories reported apart
            metrics["scene_ap"] = PresentLabelsAP(c, reduce=False)
            metrics["object_acc_unseen"] = MulticlassAccuracy(num_classes=c, average="micro")
            metrics["object_acc_seen"] = MulticlassAccuracy(num_classes=c, average="micro")
        return metrics

    def scene_graphs(self, out: dict, batch, mode: str) -> SceneGraphs:
        """The predicted scene graphs of a batch in ``mode``."""
        if mode == "sgdet":
            return SceneGraphs(
                out["det_label"],
                out["det_score"],
                out["det_box"],
                out["det_batch"],
                out["det_rel_index"],
                out["det_relation_logits"].float().softmax(-1),
            )
        if mode == "predcls":
            labels = batch.obj_label
            scores = torch.ones(labels.numel(), device=labels.device)
        else:
            scores, labels = out["object_logits"].float().softmax(-1).max(dim=-1)
        return SceneGraphs(
            labels,
            scores,
            batch.obj_box,
            obj_batch(batch),
            batch.rel_index,
            out["relation_logits"].float().softmax(-1),
        )

    @staticmethod
    def annotated_graphs(batch) -> SceneGraphs:
        """The annotated scene graphs of a batch."""
        labels = batch.obj_label
        return SceneGraphs(
            labels,
            torch.ones(labels.numel(), device=labels.device),
            batch.obj_box,
            obj_batch(batch),
            batch.rel_index,
            predicates=batch.rel_label,
        )

    def update_metrics(self, metrics, out, batch) -> dict[str, Metric]:
        logged = {}
        metrics["scene_map"](out["scene_logits"], batch.y.long())
        logged["scene_map"] = metrics["scene_map"]
        if self.has_unseen:
            metrics["scene_ap"].update(out["scene_logits"], batch.y.long())
            unseen = ~self.seen[batch.obj_label]
            for name, chosen in (("object_acc_unseen", unseen), ("object_acc_seen", ~unseen)):
                if chosen.any():
                    metrics[name](out["object_logits"][chosen], batch.obj_label[chosen])
                    logged[name] = metrics[name]
        metrics["region_acc"](out["region_logits"], self.region_target(out, batch))
        logged["region_acc"] = metrics["region_acc"]
        owner = region_instances(batch.obj_region_index, batch.obj_region_weight, batch.num_nodes)
        target, trained = same_instance_targets(batch.edge_index, owner)
        if trained.any():
            same = (out["edge_logits"][trained].float().sigmoid() >= self.edge_threshold).long()
            metrics["grouping_acc"](same, target[trained].long())
            logged["grouping_acc"] = metrics["grouping_acc"]
        if batch.obj_label.numel():
            metrics["object_acc"](out["object_logits"], batch.obj_label)
            logged["object_acc"] = metrics["object_acc"]
        truth = self.annotated_graphs(batch)
        seen = self.train_triplets if bool(self.train_triplets.any()) else None
        if batch.rel_label.numel():
            metrics["rel_acc"](out["relation_logits"], batch.rel_label)
            logged["rel_acc"] = metrics["rel_acc"]
            for mode in ("predcls", "sgcls"):
                metrics[f"{mode}_recall"].update(self.scene_graphs(out, batch, mode), truth, seen)
        if "det_label" in out:
            metrics["sgdet_recall"].update(self.scene_graphs(out, batch, "sgdet"), truth, seen)
            h, w = batch.segments.shape[1:]
            metrics["sgdet_detection"].update(
                batch.image_id.flatten(),
                instance_masks(out["det_region_instance"], batch.segments, out["det_batch"]),
                out["det_label"],
                out["det_score"],
                out["det_batch"],
                unpack_masks(batch.obj_mask, h, w),
                batch.obj_label,
                obj_batch(batch),
            )
        return logged

    def epoch_metrics(self, metrics) -> dict[str, torch.Tensor]:
        values = {}
        if self.has_unseen:
            ap = metrics["scene_ap"].compute()  # (C,), NaN without a positive
            values["scene_map_seen"] = ap[self.seen].nanmean()
            values["scene_map_unseen"] = ap[~self.seen].nanmean()
            metrics["scene_ap"].reset()
        for mode in self.modes:
            metric = metrics[f"{mode}_recall"]
            if metric.update_called:
                for name, value in metric.compute().items():
                    values[f"{MODE_PREFIX[mode]}_{name}"] = value
            metric.reset()
        detection = metrics["sgdet_detection"]
        if detection.update_called:
            for name, value in detection.compute().items():
                values[f"sgdet_{name}"] = value
        detection.reset()
        return values

    # -- using a trained model --------------------------------------------------------------
    def prediction(self, out, graph, options, mode=None):
        """The typed prediction of one image
        (:func:`~graphvision.tasks.scene_graph.prediction.scene_graph_prediction`)."""
        from graphvision.tasks.scene_graph.prediction import scene_graph_prediction

        return scene_graph_prediction(self, out, graph, options, mode)

    def wants_detection(self, batch, mode=None) -> bool:
        """Finding the objects: for ``mode=sgdet``, or by default when none are given."""
        return mode == "sgdet" or (mode is None and batch.obj_label.numel() == 0)

    def write_breakdowns(self, net, loader, out_dir: Path, modes=None) -> list[Path]:
        """The files of :func:`~graphvision.tasks.scene_graph.reports.write_breakdowns`."""
        from graphvision.tasks.scene_graph.reports import write_breakdowns

        return write_breakdowns(self, net, loader, out_dir, modes)

    def describe(self) -> str:
        unseen = f", {int((~self.seen).sum())} unseen" if self.has_unseen else ""
        return (
            f"scene graphs: {len(self.categories)} categories{unseen}, "
            f"{len(self.predicates)} predicates"
        )


def training_triplets(dataset, shape: tuple[int, int, int]) -> torch.Tensor:
    """Bool ``[C, P, C]``: which (subject, predicate, object) classes occur in ``dataset``."""
    from tqdm.auto import tqdm

    seen = torch.zeros(shape, dtype=torch.bool)
    for i in tqdm(
        range(len(dataset)), desc="training triplets", unit="img", disable=None, leave=False
    ):
        graph = dataset[i]
        if graph.rel_label.numel():
            s, o = graph.rel_index
            seen[graph.obj_label[s], graph.rel_label, graph.obj_label[o]] = True
    return seen
