"""COCO 2017 instance annotations: reading, validation, masks, objects and relations."""

from __future__ import annotations

import json
import logging
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
(set it with data.root=ROOT)"""


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


def read_coco(ann_file: str | Path, image_dir: str | Path) -> CocoIndex:
    """Reads and validates a COCO instances JSON.

    Raises:
        ValueError: malformed JSON, a missing key, a duplicate id, or an annotation
            naming an unknown image or category; the message names the file and the id.
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
        images[img["id"]] = CocoImage(
            int(img["id"]), image_dir / img["file_name"], int(img["width"]), int(img["height"])
        )
    known_cats = set(cat_ids)
    for ann in raw["annotations"]:
        _require(
            ann,
            ("id", "image_id", "category_id", "bbox"),
            f"annotation {ann.get('id', '?')}",
            ann_file,
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
        images[ann["image_id"]].annotations.append(ann)
    ordered = sorted(images.values(), key=lambda im: im.id)
    log.info(
        "%s: %d images, %d annotations, %d categories",
        ann_file.name,
        len(ordered),
        len(raw["annotations"]),
        len(categories),
    )
    return CocoIndex(ann_file, categories, ordered)


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
        a for a in annotations
        if not a.get("iscrowd", 0) and a["bbox"][2] * a["bbox"][3] / image_area > cfg.min_object_size
    ]  # fmt: skip
    if len(kept) > cfg.max_objects:
        largest = sorted(kept, key=lambda a: -a["bbox"][2] * a["bbox"][3])[: cfg.max_objects]
        ids = {id(a) for a in largest}
        kept = [a for a in kept if id(a) in ids]
    return kept


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def mask_centre(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Normalised ``(x, y)`` centroid of a mask; the box centre if the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    h, w = mask.shape
    return np.array([(xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h])


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
        ``y [1, C]``, ``obj_label [M]``, ``obj_box [M, 4]`` (normalised x0, y0, x1, y1),
        ``obj_region_index [2, K]`` (object, region), ``obj_region_weight [K]``
        (fraction of the region the object covers), ``obj_mask [M, ceil(h * w / 8)]`` (the
        object's mask at the working resolution, a pixel in it when the object covers at
        least half of it, bit-packed row-major by ``np.packbits``; :func:`unpack_masks`),
        ``rel_index [2, R]``, ``rel_label [R]``.
    """
    from PIL import Image

    y = np.zeros((1, len(category_index)), dtype=np.float32)
    for a in annotations:
        y[0, category_index[a["category_id"]]] = 1.0
    objects = select_objects(annotations, width, height, cfg)
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
        coverage = np.asarray(
            Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.BOX), dtype=np.float64
        )
        weight = np.bincount(flat, coverage.ravel(), minlength=n) / np.maximum(area, 1)
        masks.append(np.packbits(coverage.ravel() >= 0.5))
        regions = np.nonzero(weight >= cfg.min_membership)[0]
        if len(regions) == 0:
            regions = np.array([int(np.argmax(weight))])
        labels.append(category_index[a["category_id"]])
        boxes.append(box)
        centres.append(mask_centre(mask, box))
        mem_obj.append(np.full(len(regions), m))
        mem_reg.append(regions)
        mem_w.append(np.clip(weight[regions], cfg.min_membership, 1.0))
    boxes_arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    rel_index, rel_label = pairwise_relations(boxes_arr, np.array(centres).reshape(-1, 2))
    return {
        "y": y,
        "obj_label": np.array(labels, dtype=np.int64),
        "obj_box": boxes_arr,
        "obj_region_index": np.stack([_cat(mem_obj, np.int64), _cat(mem_reg, np.int64)]),
        "obj_region_weight": _cat(mem_w, np.float32),
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
