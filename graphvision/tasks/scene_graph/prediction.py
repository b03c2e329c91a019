"""A scene graph task's prediction of one image, typed: scene labels, regions, objects and
relations (:class:`SceneGraphPrediction`), built from the network's outputs by
:func:`scene_graph_prediction`; ``to_json()`` gives ``predict``'s JSON record."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from graphvision.nn.heads import object_masks
from graphvision.tasks.prediction import Label, Region, image_labels, region_details


@dataclass
class SceneObject:
    """An object: given (an annotation or the user's box) or found in the region graph.

    ``box``: x, y, width, height in the photo's pixels; ``mask``: COCO RLE at the photo's
    size; ``top``: the best labels; ``true``: the annotated label (annotated images only)."""

    id: int
    label: str
    score: float
    top: list[Label]
    box: list[float]
    mask: dict
    true: str | None = None

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "label": self.label,
            "score": self.score,
            "top": [t.to_json() for t in self.top],
            "box": self.box,
            "mask": self.mask,
        }
        return out if self.true is None else {**out, "true": self.true}


@dataclass
class Relation:
    """The relation of an ordered pair of objects (their ids): the best predicate, its
    score (subject x object x predicate), every predicate's probability, and the annotated
    predicate (annotated images only)."""

    subject: int
    object: int
    predicate: str
    score: float
    scores: dict[str, float]
    true: str | None = None

    def to_json(self) -> dict:
        out = {
            "subject": self.subject,
            "object": self.object,
            "predicate": self.predicate,
            "score": self.score,
            "scores": self.scores,
        }
        return out if self.true is None else {**out, "true": self.true}


@dataclass
class SceneGraphPrediction:
    """Scene labels (those above the threshold, or the best one; and all, best first), each
    region's top classes and attention, and the scene graph (``mode`` None: no objects)."""

    scene: list[Label]
    scene_all: list[Label]
    regions: list[Region]
    mode: str | None = None
    objects: list[SceneObject] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {
            "scene": [d.to_json() for d in self.scene],
            "scene_all": [d.to_json() for d in self.scene_all],
            "region_details": [r.to_json() for r in self.regions],
        }
        if self.mode is not None:
            out["mode"] = self.mode
            out["objects"] = [o.to_json() for o in self.objects]
            out["relations"] = [r.to_json() for r in self.relations]
        return out

    def title(self) -> str:
        """The best scene labels, for a picture's title."""
        return ", ".join(f"{d.category} {d.probability:.2f}" for d in self.scene[:4])

    def panels(self, image) -> list:
        """Drawings beside the region graph (:func:`~graphvision.viz.draw_prediction`): the
        objects' outlines and top relations over ``image``, when there are objects."""
        from graphvision.tasks.scene_graph.pictures import scene_graph_panel

        return [scene_graph_panel(self, image)] if self.objects else []


def scene_graph_prediction(
    task, out: dict, graph, options: dict, mode: str | None = None
) -> SceneGraphPrediction:
    """The prediction of one image (a batch of one graph) from the outputs of ``task`` (a
    :class:`~graphvision.tasks.SceneGraphTask`).

    ``mode``: ``sgdet`` (the objects found in the region graph; the default when the graph
    has none), ``sgcls`` (the given objects, labels predicted; the default otherwise) or
    ``predcls`` (the given objects with their given labels; the default when
    ``options["labels_given"]``). ``options``: ``conf/predict.yaml``'s settings, ``size``
    (the photo's width and height), ``annotated`` and ``labels_given``. Found objects are
    kept above ``object_threshold`` (at most ``top_objects``); relations above
    ``relation_threshold`` (at most ``top_relations``); both ordered by score.

    Raises:
        ValueError: a ``mode`` the inputs do not allow, naming what it needs.
    """
    scene, scene_all = image_labels(
        task.categories, out["scene_logits"].float().sigmoid()[0], options["threshold"]
    )
    region_probs = out["region_logits"].float().softmax(-1)  # (N, C + 1): last is background
    regions = region_details(
        graph, [*task.categories, "background"], region_probs, out, options["top_k"]
    )
    found = "det_label" in out
    default = "sgdet" if found else ("predcls" if options.get("labels_given") else "sgcls")
    mode = mode or (default if found or graph.num_objects else None)
    if mode is None:
        return SceneGraphPrediction(scene, scene_all, regions)
    known = options.get("labels_given") or options.get("annotated")
    allowed = {
        "sgdet": found,
        "sgcls": graph.num_objects > 0,
        "predcls": graph.num_objects > 0 and bool(known),
    }
    if mode not in allowed:
        raise ValueError(f"mode={mode}: choose among {list(allowed)}")
    if not allowed[mode]:
        needs = {
            "sgdet": "an image without annotations or boxes",
            "sgcls": "objects (annotations= or boxes=)",
            "predcls": "objects with their categories (annotations=, or boxes= naming each one)",
        }
        raise ValueError(f"mode={mode} needs {needs[mode]}")
    objects, relations = _scene_graph(task, out, graph, options, mode)
    return SceneGraphPrediction(scene, scene_all, regions, mode, objects, relations)


def _scene_graph(task, out, graph, options, mode) -> tuple[list, list]:
    from pycocotools import mask as mask_utils

    from graphvision.tasks.scene_graph.detection import instance_masks

    width, height = options.get("size") or tuple(reversed(graph.segments.shape))
    segments = graph.segments[None]  # (1, h, w): one graph, so region ids are its own
    if mode == "sgdet":
        obj_p = out["det_object_logits"].float().softmax(-1)
        labels, scores = out["det_label"], out["det_score"]
        masks = instance_masks(out["det_region_instance"], segments, out["det_batch"])
        pairs, rel_logits = out["det_rel_index"], out["det_relation_logits"]
        best_first = torch.argsort(scores, descending=True, stable=True)
        keep = best_first[scores[best_first] >= options["object_threshold"]]
        keep = keep[: options["top_objects"]]
    else:
        obj_p = out["object_logits"].float().softmax(-1)
        if mode == "predcls":
            labels = graph.obj_label
            scores = torch.ones(labels.numel())
        else:
            scores, labels = obj_p.max(dim=-1)
        owner = torch.zeros(graph.num_objects, dtype=torch.long)
        masks = (
            object_masks(
                segments,
                graph.obj_region_index,
                graph.obj_region_weight,
                owner,
                graph.num_objects,
                graph.num_nodes,
            )
            >= 0.5
        )
        pairs, rel_logits = graph.rel_index, out["relation_logits"]
        keep = torch.arange(labels.numel())
    if masks.size(0):  # each mask at the photo's size
        big = F.interpolate(masks[None].float(), size=(height, width), mode="nearest")[0] > 0.5
        rles = mask_utils.encode(np.asfortranarray(big.permute(1, 2, 0).numpy().astype(np.uint8)))
    else:
        rles = []
    annotated = bool(options.get("annotated"))
    names = task.categories
    objects = []
    for m in keep.tolist():
        if mode == "sgdet":
            box = [round(float(v), 1) for v in mask_utils.toBbox(rles[m])]
        else:
            x0, y0, x1, y1 = graph.obj_box[m].tolist()
            box = [
                round(v, 1)
                for v in (x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)
            ]
        top = obj_p[m].topk(min(options["top_k"], obj_p.size(1)))
        objects.append(
            SceneObject(
                id=m,
                label=names[int(labels[m])],
                score=float(scores[m]),
                top=[Label(names[int(c)], float(p)) for p, c in zip(top.values, top.indices)],
                box=box,
                mask={"size": [height, width], "counts": rles[m]["counts"].decode()},
                true=names[int(graph.obj_label[m])] if annotated else None,
            )
        )
    objects.sort(key=lambda o: -o.score)
    score_of = {o.id: o.score for o in objects}
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
            Relation(
                subject=s,
                object=o,
                predicate=task.predicates[int(predicate)],
                score=score,
                scores={name: float(v) for name, v in zip(task.predicates, rel_p[k])},
                true=task.predicates[int(graph.rel_label[k])] if annotated else None,
            )
        )
    relations.sort(key=lambda r: -r.score)
    return objects, relations[: options["top_relations"]]
