"""Training-time augmentation from the cache, keeping every target true.

A random geometric transform (horizontal flip, a scaled and translated crop, a small
rotation) and a colour jitter are applied to a cached entry, in the DataLoader's workers,
without decoding the image again:

- the image is resampled (bilinear), the superpixel label map and the object masks with
  nearest and bilinear sampling on the same grid;
- the region graph (descriptors, adjacency, edge features) is rebuilt from the warped image
  and label map by the same builder as pre-processing (:func:`~graphvision.regions.region_graph`);
  a region cropped away is gone, a region cut in two stays one region;
- each object's memberships are recomputed from its warped mask (thresholded at one half, as
  pre-processing thresholds a mask at the working resolution), its box is its transformed
  box clipped to the crop, and an object whose visible box no longer covers
  ``min_object_size`` of the image, or whose mask is gone, is dropped (sg2im's rule, after
  the crop); a scene label leaves when its every instance was an object and all are gone;
- relations are recomputed by sg2im's rule from the transformed boxes and mask centroids, so
  a flip turns ``left of`` into ``right of``; annotated relations (a job's ``relations``) are
  kept as annotated, less those naming an object that is gone (a flip leaves an annotated
  ``left of`` as it is: a vocabulary with such predicates wants ``data/augment=none``).

Every draw comes from ``numpy.random.default_rng([seed, epoch, index])``: runs repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from graphvision.data.objects import ObjectConfig, unpack_masks
from graphvision.data.relations import kept_relations, pairwise_relations
from graphvision.regions import RegionConfig, region_graph


@dataclass(frozen=True)
class AugmentConfig:
    """``data.augment`` (``conf/data/augment/``). Part of no cache key: it acts after it."""

    flip: float = 0.5  # probability of a horizontal flip
    min_scale: float = 0.6  # the crop's side, as a fraction of the image's, is in [min_scale, 1]
    rotate: float = 10.0  # degrees, at most, either way
    colour: float = 0.2  # brightness, contrast and saturation scaled by 1 +- this, at most
    pad: float = 0.0  # the crop may reach this far (of the image's side) past each edge
    seed: int = 0  # with the epoch and the image's index, seeds every draw


@dataclass(frozen=True)
class Transform:
    """Where the output image comes from: a square of side ``scale`` (of the image's side)
    centred at ``centre`` (normalised ``x, y``), turned by ``angle`` radians, mirrored if
    ``flip``; colour factors ``brightness``, ``contrast``, ``saturation``."""

    flip: bool = False
    scale: float = 1.0
    angle: float = 0.0
    centre: tuple[float, float] = (0.5, 0.5)
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    def matrix(self) -> np.ndarray:
        """``[2, 3]``: output coordinates in ``[-1, 1]`` -> source coordinates in ``[-1, 1]``
        (``torch.nn.functional.affine_grid``'s convention, ``align_corners=False``)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        linear = (
            self.scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if self.flip else 1.0, 1.0])
        )
        shift = 2 * np.asarray(self.centre) - 1
        return np.concatenate([linear, shift[:, None]], axis=1)

    def to_output(self, points: np.ndarray) -> np.ndarray:
        """Normalised ``[K, 2]`` source points -> where they land in the output image."""
        m = self.matrix()
        src = 2 * np.asarray(points, dtype=np.float64) - 1
        out = np.linalg.solve(m[:, :2], (src - m[:, 2]).T).T
        return (out + 1) / 2


def sample_transform(rng: np.random.Generator, cfg: AugmentConfig) -> Transform:
    """A random :class:`Transform` whose turned square lies inside the image, or reaches up
    to ``cfg.pad`` past its edges (CIFAR's padded crops: black pixels there)."""
    flip = bool(rng.random() < cfg.flip)
    angle = math.radians(rng.uniform(-cfg.rotate, cfg.rotate))
    scale = rng.uniform(cfg.min_scale, 1.0)
    spread = abs(math.cos(angle)) + abs(math.sin(angle))  # the turned square's extent / side
    scale = min(scale, 1.0 / spread)
    half = scale * spread / 2
    low, high = half - cfg.pad, 1 - half + cfg.pad
    centre = (rng.uniform(low, high), rng.uniform(low, high))
    jitter = [rng.uniform(1 - cfg.colour, 1 + cfg.colour) for _ in range(3)]
    return Transform(flip, scale, angle, centre, *jitter)


def _sample(maps: torch.Tensor, t: Transform, mode: str, padding: str = "zeros") -> torch.Tensor:
    """``maps [K, H, W]`` float resampled on ``t``'s grid; outside the image ``padding``
    (``grid_sample``'s: ``zeros`` or ``border``)."""
    k, h, w = maps.shape
    theta = torch.as_tensor(t.matrix(), dtype=torch.float32)[None]
    grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False).expand(k, h, w, 2)
    out = F.grid_sample(maps[:, None], grid, mode=mode, padding_mode=padding, align_corners=False)
    return out[:, 0]


def jitter_colour(image: torch.Tensor, t: Transform) -> torch.Tensor:
    """``image [3, H, W]`` float in [0, 1]: brightness, contrast (about the mean grey) and
    saturation (about each pixel's grey) scaled by ``t``'s factors."""
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]  # (1, H, W)
    image = image * t.brightness
    image = (image - grey.mean() * t.brightness) * t.contrast + grey.mean() * t.brightness
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    return ((image - grey) * t.saturation + grey).clamp(0, 1)


def transform_entry(
    entry: dict,
    t: Transform,
    objects: ObjectConfig,
    regions: RegionConfig | None = None,
    annotated: bool = False,
) -> dict:
    """A cache entry as if its image had been ``t``-transformed before pre-processing, its
    superpixels kept (module docstring); its region graph rebuilt as ``regions`` (``edges``,
    ``k``, ``knn_colour``; default: the adjacency graph) says; its relations the entry's own
    among the objects left when ``annotated`` (default False: sg2im's rule, recomputed)."""
    image = entry["image"].float() / 255.0  # (3, H, W)
    _, h, w = image.shape
    image = _sample(image, t, "bilinear")
    if (t.brightness, t.contrast, t.saturation) != (1.0, 1.0, 1.0):
        image = jitter_colour(image, t)
    rgb = (image * 255.0).round().clamp(0, 255).to(torch.uint8)  # (3, H, W)
    # a padded border (``pad``) belongs to the region at the edge beside it
    labels = _sample(entry["segments"].float()[None], t, "nearest", "border")[0].round().long()
    regions = regions or RegionConfig()
    graph = region_graph(
        rgb.permute(1, 2, 0).numpy(), labels.numpy(), regions.edges, regions.k, regions.knn_colour
    )
    out = {
        "image": rgb,
        "segments": torch.from_numpy(graph["segments"].astype(np.int32)),
        "x": torch.from_numpy(graph["x"]),
        "pos": torch.from_numpy(graph["pos"]),
        "edge_index": torch.from_numpy(graph["edge_index"]),
        "edge_attr": torch.from_numpy(graph["edge_attr"]),
        **{k: entry[k] for k in ("image_id", "label") if k in entry},
    }
    if "obj_label" in entry:
        out.update(transform_objects(entry, t, graph["segments"], objects, annotated))
    return out


def object_memberships(weight: np.ndarray, min_membership: float) -> tuple[np.ndarray, ...]:
    """:func:`~graphvision.data.objects.region_memberships` of ``K`` objects at once, from
    ``weight [K, N]`` (the fraction of each region each object covers): ``(object, region,
    weight)`` of every membership, object by object, regions in order; an object covering
    no region by ``min_membership`` keeps its most covered one."""
    member = weight >= min_membership
    none = ~member.any(axis=1)
    member[none, weight[none].argmax(axis=1)] = True
    obj, region = np.nonzero(member)
    kept = np.clip(weight[obj, region], min_membership, 1.0).astype(np.float32)
    return obj.astype(np.int64), region.astype(np.int64), kept


def masks_centres(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """:func:`~graphvision.data.objects.mask_centre` of ``K`` masks ``[K, H, W]`` at once
    (``boxes [K, 4]`` stand in for empty masks): ``[K, 2]`` float64."""
    k, h, w = masks.shape
    cols = masks.sum(axis=1, dtype=np.int64)  # (K, W)
    rows = masks.sum(axis=2, dtype=np.int64)  # (K, H)
    total = cols.sum(axis=1)
    safe = np.maximum(total, 1)
    x = (cols @ np.arange(w) / safe + 0.5) / w
    y = (rows @ np.arange(h) / safe + 0.5) / h
    box_centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    return np.where((total > 0)[:, None], np.stack([x, y], 1), box_centre).reshape(-1, 2)


def transform_objects(
    entry: dict, t: Transform, segments: np.ndarray, objects: ObjectConfig, annotated: bool = False
) -> dict:
    """The object targets of ``entry`` after ``t``, over the new label map ``segments``; with
    ``annotated``, the entry's relations among the objects kept, else sg2im's on them."""
    h, w = segments.shape
    masks = unpack_masks(entry["obj_mask"].numpy(), h, w).astype(np.float32)  # (M, H, W)
    coverage = _sample(torch.from_numpy(masks), t, "bilinear").numpy().astype(np.float64)
    boxes = entry["obj_box"].numpy().astype(np.float64)  # (M, 4)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], 1)
    moved = t.to_output(corners.reshape(-1, 2)).reshape(-1, 4, 2)
    new_boxes = np.clip(np.concatenate([moved.min(1), moved.max(1)], 1), 0.0, 1.0)  # (M, 4)
    visible = (new_boxes[:, 2] - new_boxes[:, 0]) * (new_boxes[:, 3] - new_boxes[:, 1])
    keep = np.nonzero((visible > objects.min_object_size) & (coverage >= 0.5).any((1, 2)))[0]
    # every kept object at once (no loop over objects): the warped masks, thresholded as
    # pre-processing thresholds them, their region memberships, centres and packed bits
    flat = segments.ravel()
    n = int(flat.max()) + 1
    area = np.bincount(flat, minlength=n).astype(np.float64)
    inside = coverage[keep] >= 0.5  # (K, H, W)
    k = len(keep)
    ids = np.arange(k)[:, None] * n + flat[None, :]  # (object, region) of every pixel
    covered = np.bincount(ids[inside.reshape(k, h * w)], minlength=k * n).reshape(k, n)
    mem_obj, mem_reg, mem_w = object_memberships(
        covered / np.maximum(area, 1), objects.min_membership
    )
    centres = masks_centres(inside, new_boxes[keep])
    packed = np.packbits(inside.reshape(k, h * w), axis=1)
    labels = [int(v) for v in entry["obj_label"][torch.from_numpy(keep)]]
    boxes_kept = new_boxes[keep].astype(np.float32).reshape(-1, 4)
    if annotated:
        rel_index, rel_label = kept_relations(
            entry["rel_index"].numpy(), entry["rel_label"].numpy(), keep, len(boxes)
        )
    else:
        rel_index, rel_label = pairwise_relations(boxes_kept, centres)
    y = entry["y"].clone()
    if "y_objects_only" in entry:  # a category all of whose instances were objects, all gone
        gone = entry["y_objects_only"][0].bool().clone()
        gone[torch.tensor(labels, dtype=torch.long)] = False
        y[0, gone] = 0.0

    return {
        "y": y,
        "obj_label": torch.tensor(labels, dtype=torch.long),
        "obj_box": torch.from_numpy(boxes_kept),
        "obj_region_index": torch.from_numpy(np.stack([mem_obj, mem_reg])),
        "obj_region_weight": torch.from_numpy(mem_w),
        "obj_mask": torch.from_numpy(packed),
        "rel_index": torch.from_numpy(rel_index),
        "rel_label": torch.from_numpy(rel_label),
        **({"y_objects_only": entry["y_objects_only"]} if "y_objects_only" in entry else {}),
    }


def augment_entry(
    entry: dict,
    cfg: AugmentConfig,
    objects: ObjectConfig,
    epoch: int,
    index: int,
    regions: RegionConfig | None = None,
    annotated: bool = False,
) -> dict:
    """``entry`` under the transform drawn for ``(cfg.seed, epoch, index)``, its region graph
    rebuilt as ``regions`` says, its relations kept when ``annotated`` (:func:`transform_entry`)."""
    rng = np.random.default_rng([cfg.seed, epoch, index])
    return transform_entry(entry, sample_transform(rng, cfg), objects, regions, annotated)
