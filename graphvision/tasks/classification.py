"""Image classification: one class per image, from the CLS vector."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from graphvision.nn.heads import ClassHead
from graphvision.tasks.base import Task


class ClassificationTask(Task):
    """Single-label image classification (image folders): class logits ``[B, K]`` from the
    CLS vector, cross-entropy loss ``classification``, metric ``acc``.

    Args:
        info, dim, dropout, loss_weights: see :class:`~graphvision.tasks.base.Task`.
    """

    loss_names = ("classification",)
    progress_bar = ("acc",)

    def __init__(
        self, info: dict, dim: int, dropout: float, loss_weights: dict[str, float]
    ) -> None:
        super().__init__(info, dim, dropout, loss_weights)
        hint = "use an image-folder dataset (data=image_folder) or model/task=scene_graph"
        self.classes = self.require("classes", hint)
        self.class_head = ClassHead(dim, len(self.classes))

    def forward(self, cls, tokens, batch) -> dict[str, torch.Tensor]:
        return {"class_logits": self.class_head(cls)}

    def attribution_logits(self, out):
        return out["class_logits"]

    def losses(self, out, batch) -> dict[str, torch.Tensor]:
        return {"classification": F.cross_entropy(out["class_logits"], batch.label)}

    def make_metrics(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {"acc": MulticlassAccuracy(num_classes=len(self.classes), average="micro")}
        )

    def update_metrics(self, metrics, out, batch) -> dict[str, Metric]:
        metrics["acc"](out["class_logits"], batch.label)
        return {"acc": metrics["acc"]}

    def prediction_record(self, out, graph, options) -> dict:
        probs = out["class_logits"].softmax(-1)[0]
        return {
            "classes": sorted(
                ({"class": c, "probability": float(p)} for c, p in zip(self.classes, probs)),
                key=lambda d: -d["probability"],
            ),
            "region_attention": [float(a) for a in out["attention"][-1]],
        }

    def prediction_title(self, record) -> str:
        return ", ".join(f"{d['class']} {d['probability']:.2f}" for d in record["classes"][:3])

    def describe(self) -> str:
        return f"image classification: {len(self.classes)} classes"
