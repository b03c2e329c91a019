"""Scene graphs: which categories the image holds, its objects' classes and the relation of
every ordered pair of objects, plus each region's class (an auxiliary target), and objects
found in the region graph itself (SGDet).

Three evaluation modes, the field's names: ``predcls`` (objects and their labels given,
predicates predicted), ``sgcls`` (objects given; labels and predicates predicted) and
``sgdet`` (nothing given: the objects are found by grouping regions,
:mod:`graphvision.nn.grouping`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from graphvision.data.cache import ImageJob
from graphvision.data.coco import unpack_masks
from graphvision.nn.grouping import (
    GROUPINGS,
    all_pairs,
    group_regions,
    rank_within,
    region_instances,
    same_instance_targets,
)
from graphvision.nn.heads import (
    _AREA,
    GroupingHead,
    ObjectHead,
    RegionHead,
    RelationHead,
    SceneHead,
    ZeroShotHead,
    object_masks,
    region_targets,
)
from graphvision.regions import EDGE_FEATURES
from graphvision.tasks.base import Task
from graphvision.tasks.metrics import DetectionEval, PresentLabelsAP, SceneGraphRecall, SceneGraphs

log = logging.getLogger(__name__)

#: metric-name prefix of each mode's recall (``sgcls`` keeps the names training always had)
MODE_PREFIX = {"predcls": "predcls", "sgcls": "rel", "sgdet": "sgdet"}


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

    @torch.no_grad()
    def detect(self, out: dict, tokens: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """Objects found in the region graph, then labelled and related by the object and
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
        if self.grouping == "learned":
            keep = out["edge_logits"].float().sigmoid() >= self.edge_threshold
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
        emb, geom, logits = self.object_head(
            tokens, batch.x, batch.segments, index, weight, image, m
        )
        prob, label = logits.float().softmax(-1).max(dim=-1)
        score = prob * fg_conf
        big = area >= self.min_area
        rank = rank_within(image, torch.where(big, score, -1.0))
        kept = (big & (rank < self.max_objects)).nonzero().flatten()
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
            "det_relation_logits": self.relation_head(emb[kept], geom[kept], pairs),
        }

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
    def image_job(self, path, annotation=None, category_ids=()) -> ImageJob:
        if annotation is None:  # no annotations: the same target fields, with no objects
            ids = tuple(range(1, len(self.categories) + 1))
            return ImageJob(str(path), 0, category_ids=ids)
        return ImageJob(
            str(path),
            annotation.id,
            (annotation.width, annotation.height),
            tuple(annotation.annotations),
            tuple(category_ids),
        )

    def prediction_record(self, out, graph, options) -> dict:
        """Scene labels, each region's top classes and attention, and the scene graph: in
        ``sgdet`` (no objects given) the objects found in the region graph, else the given
        objects (``sgcls``; ``predcls`` when ``options["labels_given"]``), with relations.

        Objects: ``id``, ``label``, ``score``, ``top`` (the ``top_k`` labels), ``box`` (x, y,
        width, height in the photo's pixels), ``mask`` (COCO RLE at the photo's size), and
        ``true`` for annotated ones; relations: ``subject``, ``object`` (object ids),
        ``predicate``, ``score`` (subject x object x predicate score), ``scores`` (every
        predicate's probability), and ``true`` when annotated. Both lists are ordered by score;
        found objects are kept above ``object_threshold`` (at most ``top_objects``), relations
        above ``relation_threshold`` (at most ``top_relations``).
        """
        top_k, threshold = options["top_k"], options["threshold"]
        names = self.categories
        probs = out["scene_logits"].float().sigmoid()[0]
        ranked = sorted(
            ({"category": c, "probability": float(p)} for c, p in zip(names, probs)),
            key=lambda d: -d["probability"],
        )
        record = {
            "scene": [d for d in ranked if d["probability"] >= threshold] or ranked[:1],
            "scene_all": ranked,
        }
        attention = out["attention"][-1]  # last layer, (N,)
        region_probs = out["region_logits"].float().softmax(-1)  # (N, C + 1): last is background
        labels = [*names, "background"]
        top = region_probs.topk(min(top_k, region_probs.size(1)), dim=1)
        record["region_details"] = [
            {
                "region": i,
                "centroid": [round(float(v), 4) for v in graph.pos[i]],
                "attention": float(attention[i]),
                "top_classes": [
                    {"category": labels[int(c)], "probability": float(p)}
                    for p, c in zip(top.values[i], top.indices[i])
                ],
            }
            for i in range(graph.num_nodes)
        ]
        if "det_label" in out or graph.num_objects:
            record.update(self.scene_graph_record(out, graph, options))
        return record

    def scene_graph_record(self, out, graph, options) -> dict:
        """``mode``, ``objects`` and ``relations`` of :meth:`prediction_record`."""
        from pycocotools import mask as mask_utils

        width, height = options.get("size") or tuple(reversed(graph.segments.shape))
        segments = graph.segments[None]  # (1, h, w): one graph, so region ids are its own
        detected = "det_label" in out
        if detected:
            mode = "sgdet"
            obj_p = out["det_object_logits"].float().softmax(-1)
            labels, scores = out["det_label"], out["det_score"]
            masks = instance_masks(out["det_region_instance"], segments, out["det_batch"])
            pairs, rel_logits = out["det_rel_index"], out["det_relation_logits"]
            best_first = torch.argsort(scores, descending=True, stable=True)
            keep = best_first[scores[best_first] >= options["object_threshold"]]
            keep = keep[: options["top_objects"]]
        else:
            mode = "predcls" if options.get("labels_given") else "sgcls"
            obj_p = out["object_logits"].float().softmax(-1)
            if mode == "predcls":
                labels = graph.obj_label
                scores = torch.ones(labels.numel())
            else:
                scores, labels = obj_p.max(dim=-1)
            masks = (
                object_masks(
                    segments,
                    graph.obj_region_index,
                    graph.obj_region_weight,
                    torch.zeros(graph.num_objects, dtype=torch.long),
                    graph.num_objects,
                    graph.num_nodes,
                )
                >= 0.5
            )
            pairs, rel_logits = graph.rel_index, out["relation_logits"]
            keep = torch.arange(labels.numel())
        if masks.size(0):  # each mask at the photo's size
            big = F.interpolate(masks[None].float(), size=(height, width), mode="nearest")[0] > 0.5
        else:
            big = torch.zeros(0, height, width, dtype=torch.bool)
        rles = (
            mask_utils.encode(np.asfortranarray(big.permute(1, 2, 0).numpy().astype(np.uint8)))
            if big.size(0)
            else []
        )
        annotated = bool(options.get("annotated"))
        objects = []
        for m in keep.tolist():
            if detected:
                box = [round(float(v), 1) for v in mask_utils.toBbox(rles[m])]
            else:
                x0, y0, x1, y1 = graph.obj_box[m].tolist()
                box = [
                    round(v, 1)
                    for v in (x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)
                ]
            top = obj_p[m].topk(min(options["top_k"], obj_p.size(1)))
            objects.append(
                {
                    "id": m,
                    "label": self.categories[int(labels[m])],
                    "score": float(scores[m]),
                    "top": [
                        {"category": self.categories[int(c)], "probability": float(p)}
                        for p, c in zip(top.values, top.indices)
                    ],
                    "box": box,
                    "mask": {"size": [height, width], "counts": rles[m]["counts"].decode()},
                    **({"true": self.categories[int(graph.obj_label[m])]} if annotated else {}),
                }
            )
        objects.sort(key=lambda o: -o["score"])
        score_of = {o["id"]: o["score"] for o in objects}
        rel_p = rel_logits.float().softmax(-1)
        relations = []
        for k, (s, o) in enumerate(pairs.T.tolist()):
            if s not in score_of or o not in score_of:
                continue
            p, predicate = rel_p[k].max(dim=0)
            score = score_of[s] * score_of[o] * float(p)
            if score < options["relation_threshold"]:
                continue
            relations.append(
                {
                    "subject": s,
                    "object": o,
                    "predicate": self.predicates[int(predicate)],
                    "score": score,
                    "scores": {name: float(v) for name, v in zip(self.predicates, rel_p[k])},
                    **({"true": self.predicates[int(graph.rel_label[k])]} if annotated else {}),
                }
            )
        relations.sort(key=lambda r: -r["score"])
        return {
            "mode": mode,
            "objects": objects,
            "relations": relations[: options["top_relations"]],
        }

    def prediction_title(self, record) -> str:
        return ", ".join(f"{d['category']} {d['probability']:.2f}" for d in record["scene"][:4])

    def prediction_panels(self, record, graph, image) -> list:
        if not record.get("objects"):
            return []

        def scene_graph(ax) -> None:
            from pycocotools import mask as mask_utils

            from graphvision.viz import draw_scene_graph

            objects = record["objects"]
            position = {o["id"]: i for i, o in enumerate(objects)}
            masks = [
                mask_utils.decode({**o["mask"], "counts": o["mask"]["counts"].encode()})
                for o in objects
            ]
            height, width = masks[0].shape
            boxes = torch.tensor(
                [
                    [x / width, y / height, (x + w) / width, (y + h) / height]
                    for x, y, w, h in (o["box"] for o in objects)
                ]
            )
            rels = record["relations"]
            draw_scene_graph(
                image,
                boxes,
                [f"{o['label']} {o['score']:.2f}" for o in objects],
                torch.tensor(
                    [[position[r["subject"]] for r in rels], [position[r["object"]] for r in rels]]
                ),
                [r["predicate"] for r in rels],
                ax=ax,
                masks=masks,
            )
            ax.set_title(f"{record['mode']}: objects and top relations", fontsize=8)

        return [scene_graph]

    def write_breakdowns(self, net, loader, out_dir: Path, modes=None) -> list[Path]:
        """``per_category_ap.md`` (AP of every category, best first, with its positives),
        ``relation_confusion.png`` (rows: true relation, columns: predicted; row-normalised)
        and ``predicate_recall.md`` (each predicate's R@K and ngR@K in each of ``modes``,
        default all three, at the largest K up to 50)."""
        from torchmetrics.functional.classification import multiclass_confusion_matrix

        from graphvision.viz import plot_confusion

        modes = tuple(modes or self.modes)
        recall = {
            m: SceneGraphRecall(
                len(self.predicates), self.recall_k, "iou" if m == "sgdet" else "identity"
            )
            for m in modes
        }
        got = collect(net, loader, recall)
        scene_ap = PresentLabelsAP(len(self.categories), reduce=False)
        scene_ap.update(got["scene_prob"], got["y"].long())
        ap, positives = scene_ap.compute(), got["y"].sum(0)
        rows = sorted(
            zip(self.categories, ap.tolist(), positives.tolist()),
            key=lambda r: -r[1] if r[2] else math.inf,
        )
        table = ["| category | AP | positives |", "| --- | ---: | ---: |"]
        table += [
            f"| {name} | {value:.4f} | {int(n)} |" if n else f"| {name} | – | 0 |"
            for name, value, n in rows
        ]
        ap_path = Path(out_dir) / "per_category_ap.md"
        ap_path.write_text("\n".join(table) + "\n")
        confusion = multiclass_confusion_matrix(
            got["rel_pred"], got["rel_label"], num_classes=len(self.predicates)
        )
        cm_path = Path(out_dir) / "relation_confusion.png"
        plot_confusion(confusion.cpu(), self.predicates, cm_path, "relation confusion (validation)")
        k_index = max((i for i, k in enumerate(self.recall_k) if k <= 50), default=0)
        k = self.recall_k[k_index]
        header = " | ".join(f"{m} R@{k} | {m} ngR@{k}" for m in modes)
        lines = [
            f"| predicate | ground truth | {header} |",
            "| --- | ---: |" + " ---: |" * (2 * len(modes)),
        ]
        per = {
            m: (r.per_predicate("")[k_index], r.per_predicate("ng")[k_index])
            for m, r in recall.items()
        }
        counts = torch.bincount(got["rel_label"].cpu(), minlength=len(self.predicates))
        for i, name in enumerate(self.predicates):
            cells = " | ".join(
                f"{float(gc[i]):.4f} | {float(ng[i]):.4f}" for gc, ng in per.values()
            )
            lines.append(f"| {name} | {int(counts[i])} | {cells} |")
        recall_path = Path(out_dir) / "predicate_recall.md"
        recall_path.write_text("\n".join(lines) + "\n")
        log.info("wrote %s, %s and %s", ap_path, cm_path, recall_path)
        return [ap_path, cm_path, recall_path]

    def describe(self) -> str:
        unseen = f", {int((~self.seen).sum())} unseen" if self.has_unseen else ""
        return (
            f"scene graphs: {len(self.categories)} categories{unseen}, "
            f"{len(self.predicates)} predicates"
        )


@torch.no_grad()
def collect(net: nn.Module, loader, recall: dict | None = None) -> dict[str, torch.Tensor]:
    """Scene probabilities and targets, relation predictions and labels over a loader, each
    batch moved to the network's device; ``recall`` (mode -> :class:`SceneGraphRecall`) is
    updated on the way (objects found in the region graph for ``sgdet``)."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    task = net.task
    recall = recall or {}
    parts: dict[str, list] = {"scene_prob": [], "y": [], "rel_pred": [], "rel_label": []}
    for batch in loader:
        batch = batch.to(device)
        out = net(batch, detect="sgdet" in recall)
        parts["scene_prob"].append(out["scene_logits"].float().sigmoid())
        parts["y"].append(batch.y.long())
        parts["rel_pred"].append(out["relation_logits"].argmax(-1))
        parts["rel_label"].append(batch.rel_label)
        truth = task.annotated_graphs(batch)
        for mode, metric in recall.items():
            metric.to(device).update(task.scene_graphs(out, batch, mode), truth)
    net.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


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
