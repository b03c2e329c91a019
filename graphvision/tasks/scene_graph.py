"""Scene graphs: which categories the image holds, its objects' classes and the relation of
every ordered pair of objects, plus each region's class (an auxiliary target)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision

from graphvision.data.cache import ImageJob
from graphvision.heads import (
    ObjectHead,
    RegionHead,
    RelationHead,
    SceneHead,
    ZeroShotHead,
    region_targets,
)
from graphvision.metrics import RelationRecall
from graphvision.tasks.base import Task

log = logging.getLogger(__name__)


def obj_batch(batch) -> torch.Tensor:
    """Image index of every object ``[M]`` (``follow_batch``'s vector, or built for one graph)."""
    if "obj_label_batch" in batch:
        return batch.obj_label_batch
    return batch.obj_label.new_zeros(batch.obj_label.numel())


class SceneGraphTask(Task):
    """Scene labels (multi-label), objects, relations and regions.

    Heads: scene logits ``[B, C]`` from the CLS vector; per-region logits ``[N, C + 1]``
    (the last column is background); objects (the membership-weighted mean of their region
    tokens, their geometry and region-mask shape) ``[M, C]``; relations of the ordered
    object pairs ``rel_index`` ``[R, P]``.

    Args:
        info, dim, dropout, loss_weights: see :class:`~graphvision.tasks.base.Task`; losses
            ``scene``, ``objects``, ``relations`` and ``regions``.
        shape_grid: side of the object region-mask grid fed to the object head (0: off).
        zero_shot: score scene and object categories by the cosine between a projected
            embedding and the text embedding of their names.
        text_encoder: the local checkpoint that embeds the names (None: the packaged MiniLM).
        recall_k: K of ``rel_R@K`` and ``rel_mR@K``.

    Categories in ``info["unseen"]`` are no training target (losses see only the seen ones)
    and are reported apart: ``scene_map_seen``, ``scene_map_unseen``, ``object_acc_seen``,
    ``object_acc_unseen``.
    """

    follow_batch = ("obj_label", "rel_label")
    loss_names = ("scene", "objects", "relations", "regions")
    progress_bar = ("scene_map", "object_acc", "rel_acc")

    def __init__(
        self,
        info: dict,
        dim: int,
        dropout: float,
        loss_weights: dict[str, float],
        shape_grid: int,
        zero_shot: bool,
        text_encoder: str | None,
        recall_k: int,
    ) -> None:
        super().__init__(info, dim, dropout, loss_weights)
        hint = "use a scene-graph dataset (data=synthetic, data=coco) or model/task=classification"
        self.categories = self.require("categories", hint)
        self.predicates = self.require("predicates", hint)
        c, p = len(self.categories), len(self.predicates)
        self.recall_k = recall_k
        self.scene_head = SceneHead(dim, c)
        self.region_head = RegionHead(dim, c)
        self.object_head = ObjectHead(dim, c, dropout, shape_grid)
        self.relation_head = RelationHead(dim, p, dropout)
        if zero_shot:  # scene and object logits against the category names' text embeddings
            from graphvision.text import encode_texts

            text = encode_texts(self.categories, text_encoder)
            self.scene_head = ZeroShotHead(dim, text)
            self.object_head.classify = nn.Sequential(nn.GELU(), ZeroShotHead(dim, text))
        unseen = set(info.get("unseen") or [])
        self.has_unseen = bool(unseen)
        self.register_buffer("seen", torch.tensor([name not in unseen for name in self.categories]))

    def forward(self, cls, tokens, batch) -> dict[str, torch.Tensor]:
        out = {"scene_logits": self.scene_head(cls), "region_logits": self.region_head(tokens)}
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
        return out

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
        # ones (their objects, their regions, their scene columns)
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
        return losses

    # -- metrics ----------------------------------------------------------------------------
    def make_metrics(self) -> nn.ModuleDict:
        c, p = len(self.categories), len(self.predicates)
        metrics = nn.ModuleDict({
            "scene_map": MultilabelAveragePrecision(num_labels=c, average="macro"),
            "region_acc": MulticlassAccuracy(num_classes=c + 1, average="micro"),
            "object_acc": MulticlassAccuracy(num_classes=c, average="micro"),
            "rel_acc": MulticlassAccuracy(num_classes=p, average="micro"),
            "rel_recall": RelationRecall(num_predicates=p, k=self.recall_k),
        })  # fmt: skip
        if self.has_unseen:  # zero-shot evaluation: seen and unseen categories reported apart
            metrics["scene_ap"] = MultilabelAveragePrecision(num_labels=c, average=None)
            metrics["object_acc_unseen"] = MulticlassAccuracy(num_classes=c, average="micro")
            metrics["object_acc_seen"] = MulticlassAccuracy(num_classes=c, average="micro")
        return metrics

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
        if batch.obj_label.numel():
            metrics["object_acc"](out["object_logits"], batch.obj_label)
            logged["object_acc"] = metrics["object_acc"]
        if batch.rel_label.numel():
            metrics["rel_acc"](out["relation_logits"], batch.rel_label)
            logged["rel_acc"] = metrics["rel_acc"]
            metrics["rel_recall"].update(
                out["relation_logits"],
                out["object_logits"],
                batch.rel_index,
                batch.rel_label,
                batch.obj_label,
                batch.rel_label_batch,
            )
        return logged

    def epoch_metrics(self, metrics) -> dict[str, torch.Tensor]:
        values = {}
        if self.has_unseen:
            ap = metrics["scene_ap"].compute()  # (C,)
            values["scene_map_seen"] = ap[self.seen].nanmean()
            values["scene_map_unseen"] = ap[~self.seen].nanmean()
            metrics["scene_ap"].reset()
        for name, value in metrics["rel_recall"].compute().items():
            values[f"rel_{name}"] = value
        metrics["rel_recall"].reset()
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

    def prediction_record(self, out, graph, top_k, threshold) -> dict:
        names = self.categories
        probs = out["scene_logits"].sigmoid()[0]
        ranked = sorted(
            ({"category": c, "probability": float(p)} for c, p in zip(names, probs)),
            key=lambda d: -d["probability"],
        )
        record = {
            "scene": [d for d in ranked if d["probability"] >= threshold] or ranked[:1],
            "scene_all": ranked,
        }
        attention = out["attention"][-1]  # last layer, (N,)
        region_probs = out["region_logits"].softmax(-1)  # (N, C + 1): last column is background
        labels = [*names, "background"]
        top = region_probs.topk(min(top_k, region_probs.size(1)), dim=1)
        record["region_details"] = [
            {"region": i, "centroid": [round(float(v), 4) for v in graph.pos[i]],
             "attention": float(attention[i]),
             "top_classes": [{"category": labels[int(c)], "probability": float(p)}
                             for p, c in zip(top.values[i], top.indices[i])]}
            for i in range(graph.num_nodes)
        ]  # fmt: skip
        if graph.num_objects:
            obj_p = out["object_logits"].softmax(-1)
            rel_p = out["relation_logits"].softmax(-1)
            record["objects"] = [
                {"index": m, "true": names[int(graph.obj_label[m])], "predicted": names[int(obj_p[m].argmax())],
                 "probability": float(obj_p[m].max()), "box": [round(float(v), 4) for v in graph.obj_box[m]]}
                for m in range(graph.num_objects)
            ]  # fmt: skip
            rels = self.predicates
            record["relations"] = [
                {"subject": int(s), "object": int(o), "true": rels[int(graph.rel_label[k])],
                 "predicted": rels[int(rel_p[k].argmax())], "probability": float(rel_p[k].max())}
                for k, (s, o) in enumerate(graph.rel_index.T)
            ]  # fmt: skip
        return record

    def prediction_title(self, record) -> str:
        return ", ".join(f"{d['category']} {d['probability']:.2f}" for d in record["scene"][:4])

    def prediction_panels(self, record, graph) -> list:
        if not record.get("objects"):
            return []

        def scene_graph(ax) -> None:
            from graphvision.viz import draw_scene_graph

            draw_scene_graph(
                graph.image,
                graph.obj_box,
                [o["predicted"] for o in record["objects"]],
                graph.rel_index,
                [r["predicted"] for r in record["relations"]],
                ax=ax,
            )
            ax.set_title("predicted objects and relations", fontsize=8)

        return [scene_graph]

    def write_breakdowns(self, net, loader, out_dir: Path) -> list[Path]:
        """``per_category_ap.md`` (AP of every category, best first, with its positives) and
        ``relation_confusion.png`` (rows: true relation, columns: predicted; row-normalised)."""
        from torchmetrics.functional.classification import (
            multiclass_confusion_matrix,
            multilabel_average_precision,
        )

        from graphvision.viz import plot_confusion

        got = collect(net, loader)
        ap = multilabel_average_precision(
            got["scene_prob"], got["y"], num_labels=len(self.categories), average=None
        )
        positives = got["y"].sum(0)
        rows = sorted(zip(self.categories, ap.tolist(), positives.tolist()), key=lambda r: -r[1])
        table = ["| category | AP | positives |", "| --- | ---: | ---: |"]
        table += [f"| {name} | {value:.4f} | {int(n)} |" for name, value, n in rows]
        ap_path = Path(out_dir) / "per_category_ap.md"
        ap_path.write_text("\n".join(table) + "\n")
        confusion = multiclass_confusion_matrix(
            got["rel_pred"], got["rel_label"], num_classes=len(self.predicates)
        )
        cm_path = Path(out_dir) / "relation_confusion.png"
        plot_confusion(confusion.cpu(), self.predicates, cm_path, "relation confusion (validation)")
        log.info("wrote %s and %s", ap_path, cm_path)
        return [ap_path, cm_path]

    def describe(self) -> str:
        unseen = f", {int((~self.seen).sum())} unseen" if self.has_unseen else ""
        return (
            f"scene graphs: {len(self.categories)} categories{unseen}, "
            f"{len(self.predicates)} predicates"
        )


@torch.no_grad()
def collect(net: nn.Module, loader) -> dict[str, torch.Tensor]:
    """Scene probabilities and targets, relation predictions and labels over a loader, each
    batch moved to the network's device."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    parts: dict[str, list] = {"scene_prob": [], "y": [], "rel_pred": [], "rel_label": []}
    for batch in loader:
        batch = batch.to(device)
        out = net(batch)
        parts["scene_prob"].append(out["scene_logits"].float().sigmoid())
        parts["y"].append(batch.y.long())
        parts["rel_pred"].append(out["relation_logits"].argmax(-1))
        parts["rel_label"].append(batch.rel_label)
    net.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}
