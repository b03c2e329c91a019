"""Pictures of a scene graph prediction: the objects' outlines and top relations over the
photo, a panel of ``predict``'s picture (:func:`~graphvision.viz.draw_prediction`)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def scene_graph_panel(prediction, image) -> Callable:
    """``f(ax)`` drawing ``prediction``'s objects (masks, boxes, labels and scores) and its
    relations over ``image`` (the photo at its own size)."""

    def draw(ax) -> None:
        from pycocotools import mask as mask_utils

        from graphvision.viz import draw_scene_graph

        objects = prediction.objects
        position = {o.id: i for i, o in enumerate(objects)}
        masks = [
            mask_utils.decode({**o.mask, "counts": o.mask["counts"].encode()}) for o in objects
        ]
        height, width = masks[0].shape
        boxes = torch.tensor(
            [
                [x / width, y / height, (x + w) / width, (y + h) / height]
                for x, y, w, h in (o.box for o in objects)
            ]
        )
        rels = prediction.relations
        draw_scene_graph(
            image,
            boxes,
            [f"{o.label} {o.score:.2f}" for o in objects],
            torch.tensor([[position[r.subject] for r in rels], [position[r.object] for r in rels]]),
            [r.predicate for r in rels],
            ax=ax,
            masks=masks,
        )
        ax.set_title(f"{prediction.mode}: objects and top relations", fontsize=8)

    return draw
