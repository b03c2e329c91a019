"""COCO 2017 instance annotations: reading, validation, masks, objects and relations."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphvision.data.relations import pairwise_relations

log = logging.getLogger(__name__)

COCO_LAYOUT = """expected COCO 2017 layout:
    ROOT/annotations/instances_train2017.json
    ROOT/annotations/instances_val2017.json
    ROOT/train2017/*.jpg
    ROOT/val2017/*.jpg
(set it with data.root=ROOT; to fetch it: python -m graphvision.data.download coco --root ROOT)"""


class DataError(ValueError):
    """Data that ``data.strict=true`` refuses: the message names the file, the image or
    annotation id, and the reason."""


def counted(reasons: Iterable[str]) -> str:
    """``"7 x polygon with fewer than 3 points, 3 x bbox outside the image"``: reasons
    counted, the most frequent first."""
    return ", ".join(f"{n} x {reason}" for reason, n in Counter(reasons).most_common())


@dataclass(frozen=True)
class ObjectConfig:
    """Which annotations become objects (sg2im's defaults). Part of the cache key."""

    min_object_size: float = 0.02  # keep objects whose box covers more than this image fraction
    max_objects: int = 8  # keep at most this many (the largest boxes) per image
    min_membership: float = 0.01  # drop region memberships below this fraction


@dataclass
class CocoImage:
    id: int
    file: Path
    width: int
    height: int
    annotations: list[dict] = field(default_factory=list)


@dataclass
class CocoIndex:
    """A parsed, validated COCO instances file."""

    ann_file: Path
    categories: list[dict]  # sorted by id: [{"id": 1, "name": "person"}, ...]
    images: list[CocoImage]
    dropped: Counter = field(default_factory=Counter)  # why annotations were left out
    repaired: Counter = field(default_factory=Counter)  # what was fixed in those kept

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    @property
    def category_index(self) -> dict[int, int]:
        """COCO category id -> contiguous index ``0..C-1``."""
        return {c["id"]: i for i, c in enumerate(self.categories)}


def check_coco_root(root: str | Path, splits: tuple[str, ...] = ("train2017", "val2017")) -> Path:
    """Fails early, naming the path and the expected layout, if ``root`` is not COCO-shaped."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root={root} does not exist.\n{COCO_LAYOUT}")
    missing = []
    for split in splits:
        ann = root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            missing.append(str(ann))
        if not (root / split).is_dir():
            missing.append(str(root / split) + "/")
    if missing:
        raise FileNotFoundError(
            f"data.root={root} is not a COCO dataset: missing {', '.join(missing)}.\n{COCO_LAYOUT}"
        )
    return root


def _require(obj: dict, keys: tuple[str, ...], where: str, ann_file: Path) -> None:
    absent = [k for k in keys if k not in obj]
    if absent:
        raise ValueError(
            f"{ann_file}: {where} lacks the key(s) {absent}; is this a COCO instances file?"
        )


BBOX_TOLERANCE = 1.0  # pixels a box may overhang the image's edge unremarked (rounding)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _segmentation_problem(seg, width: int, height: int) -> str | None:
    """Why a ``segmentation`` cannot be decoded at ``height x width``; None if it can."""
    if seg is None or seg == []:
        return None  # no mask: the box stands in for it
    if isinstance(seg, list):
        for poly in seg:
            if not isinstance(poly, list) or not all(_number(v) for v in poly):
                return "polygon that is not a list of numbers"
            if len(poly) % 2:
                return "polygon with an odd number of coordinates"
            if len(poly) < 6:
                return "polygon with fewer than 3 points"
        return None
    if not isinstance(seg, dict):
        return "segmentation that is neither polygons nor an RLE"
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        return "RLE without a size [height, width]"
    if list(size) != [height, width]:
        return "RLE whose size differs from the image's height/width"
    if isinstance(counts, list):
        if not all(isinstance(v, int) and v >= 0 for v in counts) or sum(counts) != height * width:
            return "RLE whose counts do not add up to height x width"
    elif not isinstance(counts, (str, bytes)):
        return "RLE without counts"
    return None


def check_annotation(ann: dict, width: int, height: int) -> tuple[dict | None, str | None]:
    """One annotation against its image's ``width`` and ``height``.

    Returns:
        ``(annotation, None)`` when it is sound; ``(repaired copy, what was repaired)`` when
        its box overhangs the image by more than :data:`BBOX_TOLERANCE` pixels (clipped);
        ``(None, why it is dropped)`` when it cannot be used: a box that is not 4 numbers,
        has no area or lies outside the image, a polygon with fewer than 3 points or an odd
        number of coordinates, an RLE of another size, a malformed ``iscrowd``.
    """
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
        return None, "bbox that is not a list of 4 numbers"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, "bbox with zero or negative width/height"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return None, "bbox outside the image"
    if ann.get("iscrowd", 0) not in (0, 1):
        return None, "iscrowd that is not 0 or 1"
    problem = _segmentation_problem(ann.get("segmentation"), width, height)
    if problem:
        return None, problem
    overhang = max(-x, -y, x + w - width, y + h - height)
    if overhang <= BBOX_TOLERANCE:
        return ann, None
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    return {**ann, "bbox": [x0, y0, x1 - x0, y1 - y0]}, "bbox past the image's edge (clipped)"


def read_coco(ann_file: str | Path, image_dir: str | Path, strict: bool = False) -> CocoIndex:
    """Reads and validates a COCO instances JSON.

    Every annotation is checked (:func:`check_annotation`) once, here: those that cannot be
    used are dropped and those whose box overhangs the image are clipped, and both are
    counted and logged as one line per file (``CocoIndex.dropped`` / ``repaired``).

    Args:
        strict: make any dropped or repaired annotation a :class:`DataError` naming the
            file, the annotation id and the reason (default False).

    Raises:
        ValueError: malformed JSON, a missing key, a duplicate id, an image without a
            positive width and height, or an annotation naming an unknown image or
            category; the message names the file and the id.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    try:
        with open(ann_file, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{ann_file}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    if not isinstance(raw, dict):
        raise ValueError(f"{ann_file}: expected a JSON object with images/annotations/categories")
    _require(raw, ("images", "annotations", "categories"), "the top level", ann_file)

    categories = []
    for cat in raw["categories"]:
        _require(cat, ("id", "name"), f"category {cat.get('id', '?')}", ann_file)
        categories.append({"id": int(cat["id"]), "name": str(cat["name"])})
    categories.sort(key=lambda c: c["id"])
    cat_ids = [c["id"] for c in categories]
    if len(set(cat_ids)) != len(cat_ids):
        raise ValueError(f"{ann_file}: duplicate category ids in 'categories'")

    images: dict[int, CocoImage] = {}
    for img in raw["images"]:
        _require(
            img, ("id", "file_name", "width", "height"), f"image {img.get('id', '?')}", ann_file
        )
        if img["id"] in images:
            raise ValueError(f"{ann_file}: image id {img['id']} appears twice in 'images'")
        if not all(isinstance(img[k], int) and img[k] > 0 for k in ("width", "height")):
            raise ValueError(
                f"{ann_file}: image id {img['id']} has width={img['width']!r}, "
                f"height={img['height']!r}; both must be positive integers (pixels)"
            )
        images[img["id"]] = CocoImage(
            int(img["id"]), image_dir / img["file_name"], img["width"], img["height"]
        )
    known_cats = set(cat_ids)
    dropped, repaired, seen = [], [], set()
    for ann in raw["annotations"]:
        _require(
            ann, ("id", "image_id", "category_id"), f"annotation {ann.get('id', '?')}", ann_file
        )
        if ann["image_id"] not in images:
            raise ValueError(
                f"{ann_file}: annotation id {ann['id']} names image_id {ann['image_id']}, "
                "which is not in 'images'"
            )
        if ann["category_id"] not in known_cats:
            raise ValueError(
                f"{ann_file}: annotation id {ann['id']} names category_id {ann['category_id']}, "
                "which is not in 'categories'"
            )
        image = images[ann["image_id"]]
        kept, reason = check_annotation(ann, image.width, image.height)
        if ann["id"] in seen:
            kept, reason = None, "duplicate annotation id"
        seen.add(ann["id"])
        if reason is not None:
            (repaired if kept is not None else dropped).append((ann["id"], image.id, reason))
        if kept is not None:
            image.annotations.append(kept)
    if strict and (dropped or repaired):
        ann_id, image_id, reason = (dropped or repaired)[0]
        more = len(dropped) + len(repaired) - 1
        raise DataError(
            f"{ann_file}: annotation id {ann_id} (image id {image_id}): {reason}. "
            "data.strict=true makes this an error: fix or remove the annotation, or set "
            "data.strict=false to drop or repair such annotations with a count"
            + (f" ({more} more in this file)" if more else "")
        )
    ordered = sorted(images.values(), key=lambda im: im.id)
    log.info(
        "%s: %d images, %d annotations, %d categories",
        ann_file.name,
        len(ordered),
        len(raw["annotations"]),
        len(categories),
    )
    total = len(raw["annotations"])
    if dropped:
        log.warning(
            "%s: %d of %d annotations dropped: %s",
            ann_file.name,
            len(dropped),
            total,
            counted(r for _, _, r in dropped),
        )
    if repaired:
        log.warning(
            "%s: %d of %d annotations repaired: %s",
            ann_file.name,
            len(repaired),
            total,
            counted(r for _, _, r in repaired),
        )
    return CocoIndex(
        ann_file,
        categories,
        ordered,
        dropped=Counter(r for _, _, r in dropped),
        repaired=Counter(r for _, _, r in repaired),
    )


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
) -> dict[str, np.ndarray]:
    """Scene labels, objects, their region memberships and their pairwise relations.

    Args:
        annotations: the image's COCO annotations.
        width, height: the image size the annotations refer to.
        category_index: COCO category id -> contiguous index.
        segments: ``[h, w]`` label map at the working resolution.

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
    rel_index, rel_label = pairwise_relations(boxes_arr, np.array(centres).reshape(-1, 2))
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
