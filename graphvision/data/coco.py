"""COCO instance files, read and checked (read-only): the layout of a COCO root, the images
and their annotations, each annotation checked once; what is wrong is dropped or repaired and
counted, or with ``strict`` a :class:`DataError`. What becomes an object, its mask and its
targets is :mod:`graphvision.data.objects`'."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
