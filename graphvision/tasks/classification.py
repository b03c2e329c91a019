"""Image classification: one class per image, from the CLS vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from graphvision.nn.heads import ClassHead
from graphvision.tasks.base import Task
from graphvision.tasks.prediction import Label, image_labels


@dataclass
class ClassPrediction:
    """An image's classes, best first, and the CLS token's attention to each region (last
    layer)."""

    classes: list[Label]
    region_attention: list[float]

    def to_json(self) -> dict:
        return {
            "classes": [c.to_json("class") for c in self.classes],
            "region_attention": self.region_attention,
        }

    def title(self) -> str:
        return ", ".join(f"{d.category} {d.probability:.2f}" for d in self.classes[:3])

    def panels(self, image) -> list:
        return []


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

    def forward(self, cls, tokens, batch, detect=False) -> dict[str, torch.Tensor]:
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

    def prediction(self, out, graph, options, mode=None) -> ClassPrediction:
        probs = out["class_logits"].float().softmax(-1)[0]
        _, ranked = image_labels(self.classes, probs, 1.0)
        return ClassPrediction(ranked, [float(a) for a in out["attention"][-1]])

    def describe(self) -> str:
        return f"image classification: {len(self.classes)} classes"
