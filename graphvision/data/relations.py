"""Relations between the objects of an image: annotated ones, or sg2im's geometric rule.

A dataset may annotate its relations, ``(subject, object, predicate)`` triplets naming
annotation ids (an :class:`~graphvision.data.pipeline.ImageJob`'s ``relations``): the
relation targets are then those triplets whose subject and object are both kept objects, and
no others (:func:`annotated_relations`; the field's convention: only annotated pairs are
relation targets). A dataset without annotated relations (COCO's own files, the synthetic
scenes) gets one relation for every ordered pair of objects by sg2im's rule (google/sg2im,
``data/coco.py``; :func:`pairwise_relations`).

sg2im's rule, for a subject ``s`` and object ``o`` with boxes ``(x0, y0, x1, y1)`` and mask
centroids, all normalised to ``[0, 1]`` with ``y`` pointing down:

1. ``s`` box strictly contains ``o`` box -> ``surrounding``;
2. ``s`` box strictly inside ``o`` box -> ``inside``;
3. otherwise the angle ``theta = atan2(dy, dx)`` of ``centre_s - centre_o``:
   ``|theta| >= 3pi/4`` -> ``left of``; ``[-3pi/4, -pi/4)`` -> ``above``;
   ``[-pi/4, pi/4)`` -> ``right of``; ``[pi/4, 3pi/4)`` -> ``below``.
"""

from __future__ import annotations

import math

import numpy as np

RELATIONS = ("left of", "right of", "above", "below", "inside", "surrounding")
LEFT_OF, RIGHT_OF, ABOVE, BELOW, INSIDE, SURROUNDING = range(6)


def relation(box_s, box_o, centre_s, centre_o) -> int:
    """Index into :data:`RELATIONS` of the relation ``s -> o``."""
    sx0, sy0, sx1, sy1 = box_s
    ox0, oy0, ox1, oy1 = box_o
    if sx0 < ox0 and sx1 > ox1 and sy0 < oy0 and sy1 > oy1:
        return SURROUNDING
    if sx0 > ox0 and sx1 < ox1 and sy0 > oy0 and sy1 < oy1:
        return INSIDE
    theta = math.atan2(centre_s[1] - centre_o[1], centre_s[0] - centre_o[0])
    if theta >= 3 * math.pi / 4 or theta <= -3 * math.pi / 4:
        return LEFT_OF
    if theta < -math.pi / 4:
        return ABOVE
    if theta < math.pi / 4:
        return RIGHT_OF
    return BELOW


def pairwise_relations(boxes: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relations of every ordered pair ``(i, j), i != j`` of ``M`` objects, row-major
    (``(0, 1), (0, 2), ..., (1, 0), ...``): :func:`relation`'s rules on all pairs at once.

    Shapes:
        boxes ``[M, 4]``, centres ``[M, 2]`` -> ``rel_index [2, M*(M-1)]`` (subject, object),
        ``rel_label [M*(M-1)]``.
    """
    m = len(boxes)
    s, o = np.nonzero(~np.eye(m, dtype=bool))  # row-major: subject, then object
    if len(s) == 0:
        return np.zeros((2, 0), np.int64), np.zeros(0, np.int64)
    bs, bo = boxes[s], boxes[o]
    surrounding = (
        (bs[:, 0] < bo[:, 0])
        & (bs[:, 2] > bo[:, 2])
        & (bs[:, 1] < bo[:, 1])
        & (bs[:, 3] > bo[:, 3])
    )
    inside = (
        (bs[:, 0] > bo[:, 0])
        & (bs[:, 2] < bo[:, 2])
        & (bs[:, 1] > bo[:, 1])
        & (bs[:, 3] < bo[:, 3])
    )
    centres = np.asarray(centres, dtype=np.float64)
    d = centres[s] - centres[o]
    theta = np.arctan2(d[:, 1], d[:, 0])
    by_angle = np.select(
        [
            (theta >= 3 * math.pi / 4) | (theta <= -3 * math.pi / 4),
            theta < -math.pi / 4,
            theta < math.pi / 4,
        ],
        [LEFT_OF, ABOVE, RIGHT_OF],
        BELOW,
    )
    labels = np.where(surrounding, SURROUNDING, np.where(inside, INSIDE, by_angle))
    return np.stack([s, o]).astype(np.int64), labels.astype(np.int64)


def annotated_relations(object_ids: list, relations) -> tuple[np.ndarray, np.ndarray]:
    """Annotated relations as targets over the kept objects.

    Args:
        object_ids: the annotation id of each kept object, in object order.
        relations: ``(subject id, object id, predicate index)`` triplets (annotation ids).

    Returns:
        ``rel_index [2, R]`` (subject, object positions among the kept objects) and
        ``rel_label [R]`` (the predicates) of the triplets whose subject and object are both
        kept, in the order given; the others are left out (the caller counts them).
    """
    position = {oid: m for m, oid in enumerate(object_ids)}
    kept = [
        (position[s], position[o], p) for s, o, p in relations if s in position and o in position
    ]
    rel = np.array(kept, dtype=np.int64).reshape(-1, 3)  # (R, 3)
    return np.ascontiguousarray(rel[:, :2].T), np.ascontiguousarray(rel[:, 2])


def kept_relations(
    rel_index: np.ndarray, rel_label: np.ndarray, keep: np.ndarray, num_objects: int
) -> tuple[np.ndarray, np.ndarray]:
    """The relations among the objects ``keep`` (indices of ``num_objects``, increasing),
    renumbered over them: an annotated relation naming an object that is gone is gone too.

    Shapes:
        rel_index ``[2, R]``, rel_label ``[R]``, keep ``[K]`` -> ``[2, R']``, ``[R']``.
    """
    new = np.full(num_objects, -1, dtype=np.int64)
    new[keep] = np.arange(len(keep))
    s, o = new[rel_index[0]], new[rel_index[1]]
    both = (s >= 0) & (o >= 0)
    return np.stack([s[both], o[both]]).astype(np.int64), rel_label[both].astype(np.int64)
