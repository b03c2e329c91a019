"""Objects of an image and their targets: which annotations become objects (sg2im's rules),
their masks, boxes and region memberships at the working resolution, and the relations
between them (annotated ones, or sg2im's geometric rule).

The annotations are COCO's (``bbox``, ``segmentation``, ``iscrowd``, ``category_id``,
``id``), as :func:`~graphvision.data.coco.read_coco` checked them; nothing here reads a file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from graphvision.data.relations import annotated_relations, pairwise_relations


@dataclass(frozen=True)
class ObjectConfig:
    """Which annotations become objects (sg2im's defaults). Part of the cache key."""

    min_object_size: float = 0.02  # keep objects whose box covers more than this image fraction
    max_objects: int = 8  # keep at most this many (the largest boxes) per image
    min_membership: float = 0.01  # drop region memberships below this fraction


def ann_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """Binary ``[height, width]`` uint8 mask of a COCO segmentation (polygons, RLE or
    uncompressed RLE), decoded with pycocotools."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def select_objects(
    annotations: list[dict], width: int, height: int, cfg: ObjectConfig
) -> list[dict]:
    """Non-crowd annotations whose box area exceeds ``min_object_size`` of the image; the
    ``max_objects`` largest of them, kept in annotation order."""
    image_area = float(width * height)
    kept = [
        a
        for a in annotations
        if not a.get("iscrowd", 0)
        and a["bbox"][2] * a["bbox"][3] / image_area > cfg.min_object_size
    ]
    if len(kept) > cfg.max_objects:
        largest = sorted(kept, key=lambda a: -a["bbox"][2] * a["bbox"][3])[: cfg.max_objects]
        ids = {id(a) for a in largest}
        kept = [a for a in kept if id(a) in ids]
    return kept


def concat_or_empty(parts: list[np.ndarray], dtype) -> np.ndarray:
    """``parts`` concatenated as ``dtype``; an empty array when there are none."""
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def region_memberships(
    flat: np.ndarray, coverage: np.ndarray, area: np.ndarray, min_membership: float
) -> tuple[np.ndarray, np.ndarray]:
    """The regions an object covers and their weights (the fraction of each region it
    covers, at least ``min_membership``; its most covered region if none is).

    Shapes:
        flat ``[H*W]`` region ids, coverage ``[H, W]`` in [0, 1], area ``[N]`` pixels
        -> regions ``[K]``, weights ``[K]`` clipped to ``[min_membership, 1]``.
    """
    weight = np.bincount(flat, coverage.ravel(), minlength=len(area)) / np.maximum(area, 1)
    regions = np.nonzero(weight >= min_membership)[0]
    if len(regions) == 0:
        regions = np.array([int(np.argmax(weight))])
    return regions, np.clip(weight[regions], min_membership, 1.0)


def mask_centre(
    mask: np.ndarray,
    box: np.ndarray,
    offset: tuple[int, int] = (0, 0),
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Normalised ``(x, y)`` centroid of a mask; the box centre if the mask is empty.

    ``mask`` may be a window of a larger one: ``offset = (row, col)`` of its first pixel
    and ``shape = (H, W)`` of the whole (default: the mask is the whole). Computed from
    the column and row counts (one pass of sums, 6x faster than listing the pixels with
    ``np.nonzero`` on a COCO photo; the same values)."""
    cols = mask.sum(axis=0, dtype=np.int64)
    total = int(cols.sum())
    if total == 0:
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    rows = mask.sum(axis=1, dtype=np.int64)
    h, w = shape or mask.shape
    x = offset[1] + cols @ np.arange(len(cols)) / total
    y = offset[0] + rows @ np.arange(len(rows)) / total
    return np.array([(x + 0.5) / w, (y + 0.5) / h])


def box_runs(in_size: int, out_size: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """For output pixels ``start:stop`` of PIL's BOX resampling of a line of ``in_size``
    pixels to ``out_size``: the run ``[first, last)`` of input pixels each one averages
    (those whose centre lies in ``((o + 0.5) s - S, (o + 0.5) s + S]``, ``s = in_size /
    out_size``, ``S = max(s, 1) / 2``), computed in float64 as PIL computes it."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    centre = (np.arange(start, stop) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    last = np.minimum((centre + support + 0.5).astype(np.int64), in_size)  # exclusive
    # of those, the pixels the box filter keeps: (x - centre + 0.5) / max(s, 1) in (-0.5, 0.5]
    x = np.arange(int(first.min()), int(last.max()))
    t = (x[None, :] - centre[:, None] + 0.5) / max(scale, 1.0)
    keep = (t > -0.5) & (t <= 0.5) & (x >= first[:, None]) & (x < last[:, None])
    run_start = x[0] + keep.argmax(axis=1)
    return run_start, run_start + keep.sum(axis=1)


def _run_means(values: np.ndarray, first: np.ndarray, last: np.ndarray, axis: int) -> np.ndarray:
    """Means of ``values`` over the runs ``[first, last)`` along ``axis`` (prefix sums)."""
    sums = np.cumsum(values, axis=axis, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(sums.take([0], axis=axis)), sums], axis=axis)
    count = np.maximum(last - first, 1)
    shape = (-1, 1) if axis == 0 else (1, -1)
    return (sums.take(last, axis=axis) - sums.take(first, axis=axis)) / count.reshape(shape)


def box_coverage(
    mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, tuple[slice, slice], tuple[slice, slice]]:
    """The fraction of each pixel of a ``size = (h, w)`` grid that ``mask`` (``[H, W]``,
    0/1) covers, as PIL's BOX resampling of the whole mask to ``(w, h)`` gives it (the
    horizontal pass first, kept as float32, then the vertical one), computed with prefix
    sums on the window of output pixels that the mask's non-zero extent touches: an object
    covers a few percent of a photo, so 3x less time for the same values to float32
    rounding (a last-bit difference where the sums run in another order; the same pixels
    at the 0.5 threshold), and no BLAS call (whose threads would crowd the pre-processing
    workers).

    Returns:
        ``coverage`` ``[rows, cols]`` float32 of the window, the window as slices of the
        ``(h, w)`` grid, and the slices of ``mask`` it reads (empty mask: empty window).
    """
    height, width = mask.shape
    h, w = size
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return np.zeros((0, 0), np.float32), (slice(0, 0),) * 2, (slice(0, 0),) * 2
    # the output pixels whose support reaches the extent (one more each side is harmless)
    sy, sx = height / h, width / w
    oy0, oy1 = max(0, int(rows[0] // sy) - 1), min(h, int((rows[-1] + 1) // sy) + 2)
    ox0, ox1 = max(0, int(cols[0] // sx) - 1), min(w, int((cols[-1] + 1) // sx) + 2)
    y_first, y_last = box_runs(height, h, oy0, oy1)
    x_first, x_last = box_runs(width, w, ox0, ox1)
    iy0, iy1, ix0, ix1 = (
        int(y_first.min()),
        int(y_last.max()),
        int(x_first.min()),
        int(x_last.max()),
    )
    window = mask[iy0:iy1, ix0:ix1]
    across = _run_means(window, x_first - ix0, x_last - ix0, axis=1).astype(np.float32)
    coverage = _run_means(across, y_first - iy0, y_last - iy0, axis=0).astype(np.float32)
    return coverage, (slice(oy0, oy1), slice(ox0, ox1)), (slice(iy0, iy1), slice(ix0, ix1))


def object_targets(
    annotations: list[dict],
    width: int,
    height: int,
    category_index: dict[int, int],
    segments: np.ndarray,
    cfg: ObjectConfig,
    relations: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Scene labels, objects, their region memberships and the relations between them.

    Args:
        annotations: the image's COCO annotations.
        width, height: the image size the annotations refer to.
        category_index: COCO category id -> contiguous index.
        segments: ``[h, w]`` label map at the working resolution.
        relations: annotated relations, ``(subject id, object id, predicate index)`` with
            annotation ids: the relation targets are those whose subject and object are both
            kept objects, in the order given
            (:func:`~graphvision.data.relations.annotated_relations`);
            None (default): every ordered pair of objects, by sg2im's geometric rule
            (:func:`~graphvision.data.relations.pairwise_relations`).

    Returns:
        ``y [1, C]``, ``y_objects_only [1, C]`` (1 where every annotation of the category
        is one of the objects), ``obj_label [M]``, ``obj_box [M, 4]`` (normalised x0, y0, x1, y1),
        ``obj_region_index [2, K]`` (object, region), ``obj_region_weight [K]``
        (fraction of the region the object covers), ``obj_mask [M, ceil(h * w / 8)]`` (the
        object's mask at the working resolution, a pixel in it when the object covers at
        least half of it, bit-packed row-major by ``np.packbits``; :func:`unpack_masks`),
        ``rel_index [2, R]``, ``rel_label [R]``.
    """
    y = np.zeros((1, len(category_index)), dtype=np.float32)
    for a in annotations:
        y[0, category_index[a["category_id"]]] = 1.0
    objects = select_objects(annotations, width, height, cfg)
    # categories all of whose annotations are objects: augmentation may crop them all away
    per_category = Counter(a["category_id"] for a in annotations)
    as_objects = Counter(a["category_id"] for a in objects)
    y_objects_only = np.zeros((1, len(category_index)), dtype=np.uint8)
    for cid, count in per_category.items():
        y_objects_only[0, category_index[cid]] = as_objects[cid] == count
    h, w = segments.shape
    flat = segments.ravel()
    n = int(flat.max()) + 1
    area = np.bincount(flat, minlength=n).astype(np.float64)
    labels, boxes, centres, mem_obj, mem_reg, mem_w, masks = [], [], [], [], [], [], []
    for m, a in enumerate(objects):
        x, yy, bw, bh = a["bbox"]
        box = np.array([x / width, yy / height, (x + bw) / width, (yy + bh) / height])
        mask = ann_to_mask(a["segmentation"], height, width) if a.get("segmentation") else None
        if mask is None or not mask.any():  # no mask: the box stands in for it
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[int(yy) : int(np.ceil(yy + bh)), int(x) : int(np.ceil(x + bw))] = 1
        coverage, (wy, wx), (my, mx) = box_coverage(mask, (h, w))
        inside = np.zeros((h, w), dtype=bool)
        inside[wy, wx] = coverage >= 0.5
        masks.append(np.packbits(inside.ravel()))
        regions, weights = region_memberships(
            segments[wy, wx].ravel(), coverage, area, cfg.min_membership
        )
        centres.append(mask_centre(mask[my, mx], box, (my.start, mx.start), mask.shape))
        labels.append(category_index[a["category_id"]])
        boxes.append(box)
        mem_obj.append(np.full(len(regions), m))
        mem_reg.append(regions)
        mem_w.append(weights)
    boxes_arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if relations is None:
        rel_index, rel_label = pairwise_relations(boxes_arr, np.array(centres).reshape(-1, 2))
    else:
        rel_index, rel_label = annotated_relations([a.get("id") for a in objects], relations)
    return {
        "y": y,
        "y_objects_only": y_objects_only,
        "obj_label": np.array(labels, dtype=np.int64),
        "obj_box": boxes_arr,
        "obj_region_index": np.stack(
            [concat_or_empty(mem_obj, np.int64), concat_or_empty(mem_reg, np.int64)]
        ),
        "obj_region_weight": concat_or_empty(mem_w, np.float32),
        "obj_mask": np.stack(masks) if masks else np.zeros((0, (h * w + 7) // 8), np.uint8),
        "rel_index": rel_index,
        "rel_label": rel_label,
    }


def unpack_masks(packed, height: int, width: int):
    """``obj_mask [M, ceil(h * w / 8)]`` (bit-packed, see :func:`object_targets`) -> bool
    ``[M, height, width]``; takes and returns NumPy arrays or torch tensors."""
    import torch

    is_torch = isinstance(packed, torch.Tensor)
    array = packed.cpu().numpy() if is_torch else np.asarray(packed)
    bits = np.unpackbits(array, axis=1, count=height * width).astype(bool)
    bits = bits.reshape(-1, height, width)
    return torch.from_numpy(bits).to(packed.device) if is_torch else bits
