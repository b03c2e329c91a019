"""What every task's prediction of one image holds: labels with probabilities and, per
region, its attention and best classes. The tasks' typed predictions
(:class:`~graphvision.tasks.scene_graph.prediction.SceneGraphPrediction`,
:class:`~graphvision.tasks.classification.ClassPrediction`) are built of these."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Label:
    """A category (or class) and its probability."""

    category: str
    probability: float

    def to_json(self, key: str = "category") -> dict:
        return {key: self.category, "probability": self.probability}


@dataclass
class Region:
    """One region of the graph: its centroid (normalised x, y), the CLS token's attention to
    it (last layer) and its best classes."""

    region: int
    centroid: list[float]
    attention: float
    top_classes: list[Label]

    def to_json(self) -> dict:
        return {
            "region": self.region,
            "centroid": self.centroid,
            "attention": self.attention,
            "top_classes": [t.to_json() for t in self.top_classes],
        }


def image_labels(
    names: list[str], probs: torch.Tensor, threshold: float
) -> tuple[list[Label], list[Label]]:
    """The labels at or above ``threshold`` (or the best one, if none is) and all of them,
    best first."""
    ranked = sorted(
        (Label(c, float(p)) for c, p in zip(names, probs)), key=lambda d: -d.probability
    )
    return [d for d in ranked if d.probability >= threshold] or ranked[:1], ranked


def region_details(
    graph, names: list[str], probs: torch.Tensor, out: dict, top_k: int
) -> list[Region]:
    """Every region of ``graph`` with its ``top_k`` classes (``probs [N, len(names)]``) and
    its attention (``out["attention"]``'s last layer)."""
    attention = out["attention"][-1]  # last layer, (N,)
    top = probs.topk(min(top_k, probs.size(1)), dim=1)
    return [
        Region(
            i,
            [round(float(v), 4) for v in graph.pos[i]],
            float(attention[i]),
            [Label(names[int(c)], float(p)) for p, c in zip(top.values[i], top.indices[i])],
        )
        for i in range(graph.num_nodes)
    ]
