"""The breakdowns ``eval`` writes for a scene graph model: per-category AP, the relation
confusion matrix and per-predicate recall in each mode."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from graphvision.tasks.metrics import PresentLabelsAP, SceneGraphRecall

log = logging.getLogger(__name__)


def write_breakdowns(task, net, loader, out_dir: Path, modes=None) -> list[Path]:
    """The files ``eval`` writes beside ``metrics.json`` for ``task`` (a
    :class:`~graphvision.tasks.SceneGraphTask`): ``per_category_ap.md`` (AP of every
    category, best first, with its positives), ``relation_confusion.png`` (rows: true relation, columns: predicted; row-normalised)
    and ``predicate_recall.md`` (each predicate's R@K and ngR@K in each of ``modes``,
    default all three, at the largest K up to 50)."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    from graphvision.viz import plot_confusion

    modes = tuple(modes or task.modes)
    recall = {
        m: SceneGraphRecall(
            len(task.predicates), task.recall_k, "iou" if m == "sgdet" else "identity"
        )
        for m in modes
    }
    got = collect(net, loader, recall)
    scene_ap = PresentLabelsAP(len(task.categories), reduce=False)
    scene_ap.update(got["scene_prob"], got["y"].long())
    ap, positives = scene_ap.compute(), got["y"].sum(0)
    rows = sorted(
        zip(task.categories, ap.tolist(), positives.tolist()),
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
        got["rel_pred"], got["rel_label"], num_classes=len(task.predicates)
    )
    cm_path = Path(out_dir) / "relation_confusion.png"
    plot_confusion(confusion.cpu(), task.predicates, cm_path, "relation confusion (validation)")
    k_index = max((i for i, k in enumerate(task.recall_k) if k <= 50), default=0)
    k = task.recall_k[k_index]
    header = " | ".join(f"{m} R@{k} | {m} ngR@{k}" for m in modes)
    lines = [
        f"| predicate | ground truth | {header} |",
        "| --- | ---: |" + " ---: |" * (2 * len(modes)),
    ]
    per = {
        m: (r.per_predicate("")[k_index], r.per_predicate("ng")[k_index]) for m, r in recall.items()
    }
    counts = torch.bincount(got["rel_label"].cpu(), minlength=len(task.predicates))
    for i, name in enumerate(task.predicates):
        cells = " | ".join(f"{float(gc[i]):.4f} | {float(ng[i]):.4f}" for gc, ng in per.values())
        lines.append(f"| {name} | {int(counts[i])} | {cells} |")
    recall_path = Path(out_dir) / "predicate_recall.md"
    recall_path.write_text("\n".join(lines) + "\n")
    log.info("wrote %s, %s and %s", ap_path, cm_path, recall_path)
    return [ap_path, cm_path, recall_path]


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
