"""From an image to its region graph and targets: one :class:`ImageJob` in, one entry out.

:func:`build_entry` decodes the image (at the reduced scale a JPEG allows), resizes and
segments it into its region graph (:mod:`graphvision.regions`), and adds its targets: scene
labels, objects, memberships and relations (:func:`~graphvision.data.objects.object_targets`)
for an annotated image, the class for an image-folder one. The cache stores what it returns
(:mod:`graphvision.data.cache`), ``graphvision.predict`` runs it on a photo, and
:func:`to_graph` turns either into the data contract's :class:`RegionGraph`.

A job is everything the entry depends on besides the region and object settings, so that
:meth:`ImageJob.key` names the entry: a reader (:mod:`graphvision.data.reader`) makes the
jobs of a dataset, and nothing here knows which dataset it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from graphvision.data.contract import RegionGraph
from graphvision.data.images import decode_image
from graphvision.data.objects import ObjectConfig, object_targets
from graphvision.regions import RegionConfig, image_to_regions

CACHE_VERSION = 7  # 6: JPEGs decoded at reduced scale (decode_image); 7: int16 label maps

#: fields that enter the key only when set (None is left out), so that the entries of the
#: jobs without them keep the keys they had before the field existed
_KEYED_WHEN_SET = ("relations",)


@dataclass(frozen=True)
class ImageJob:
    """Everything needed to build one image's cache entry, and nothing else."""

    path: str
    image_id: int
    expected_size: tuple[int, int] | None = None  # (width, height) from the annotation file
    annotations: tuple = ()  # COCO annotations of this image (objects task)
    category_ids: tuple = ()  # COCO category ids, in contiguous-index order
    label: int | None = None  # image-folder class
    # annotated relations, (subject annotation id, object annotation id, predicate index):
    # the relation targets (an empty tuple: none); None: sg2im's rule on every pair of objects
    relations: tuple | None = None

    def key(self, regions: RegionConfig, objects: ObjectConfig) -> str:
        """The entry's name: SHA-1 of the image file (path, size, modification time), this
        job's fields and the settings."""
        st = os.stat(self.path) if os.path.exists(self.path) else None
        blob = json.dumps(
            {
                "v": CACHE_VERSION,
                "path": os.path.abspath(self.path),
                "file": [st.st_size, st.st_mtime_ns] if st else None,
                # the fields as they are: dataclasses.asdict would deep-copy every annotation
                # first, 5 ms per COCO image, paid again by every run's setup
                "job": {
                    f.name: getattr(self, f.name)
                    for f in fields(self)
                    if f.name not in _KEYED_WHEN_SET or getattr(self, f.name) is not None
                },
                "regions": regions.as_dict(),
                "objects": asdict(objects),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(blob.encode()).hexdigest()


SIZE_MISMATCH = (
    "image size differs from the annotation file's width/height (the file's size was used)"
)
RLE_SIZE_MISMATCH = (
    "RLE mask sized for the annotation file's width/height, not the image's (dropped)"
)
RELATION_DROPPED = "annotated relation naming an object that is not kept (dropped)"
#: notes on what the object settings left out (min_object_size, max_objects, crowds), not
#: on data that is wrong: counted and logged, never an error under ``data.strict``
SETTINGS_NOTES = frozenset({RELATION_DROPPED})


def build_entry(
    job: ImageJob,
    regions: RegionConfig,
    objects: ObjectConfig,
    rgb: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> dict:
    """Decodes (unless ``rgb``, the decoded image at its full size, is given; a JPEG at
    the reduced scale :func:`~graphvision.data.images.decode_image` picks for the working
    resolution), resizes and segments one image; builds its graph and targets.

    When the decoded image's size differs from ``job.expected_size`` (the annotation
    file's width and height), the image's own size wins: boxes and polygons are read in its
    pixels, an RLE mask sized for the other size is dropped; each such event is appended to
    ``notes`` (:data:`SIZE_MISMATCH`, :data:`RLE_SIZE_MISMATCH`) for the caller to count, and
    so is each annotated relation naming an object that is not kept (:data:`RELATION_DROPPED`:
    the object settings left it out, or it was dropped above).

    Raises:
        UnreadableImageError: the image cannot be decoded.
    """
    if rgb is None:
        rgb, size = decode_image(job.path, job.expected_size, min_size=regions.size)
    else:
        size = (rgb.shape[1], rgb.shape[0])
    notes = [] if notes is None else notes  # size: (width, height) the annotations refer to
    annotations = list(job.annotations)
    if job.expected_size is not None and tuple(job.expected_size) != size:
        notes.append(SIZE_MISMATCH)
        fitting = [a for a in annotations if _rle_size(a) in (None, size[::-1])]
        notes.extend([RLE_SIZE_MISMATCH] * (len(annotations) - len(fitting)))
        annotations = fitting
    graph = image_to_regions(rgb, regions)
    out = graph_tensors(graph, job.image_id)
    if job.category_ids:
        index = {cid: i for i, cid in enumerate(job.category_ids)}
        targets = object_targets(
            annotations, *size, index, graph["segments"], objects, job.relations
        )
        if job.relations is not None:
            notes.extend([RELATION_DROPPED] * (len(job.relations) - len(targets["rel_label"])))
        out.update({k: torch.from_numpy(v) for k, v in targets.items()})
    if job.label is not None:
        out["label"] = torch.tensor([job.label])
    return out


def graph_tensors(graph: dict, image_id: int) -> dict:
    """The image and region graph part of a cache entry, as tensors, from
    :func:`~graphvision.regions.image_to_regions`'s ``image`` (``[H, W, 3]``, stored
    ``[3, H, W]``) and graph fields (the label map in :func:`compact_labels`' type)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(graph["image"].transpose(2, 0, 1))),
        "segments": torch.from_numpy(compact_labels(graph["segments"])),
        **{k: torch.from_numpy(graph[k]) for k in ("x", "pos", "edge_index", "edge_attr")},
        "image_id": torch.tensor([image_id]),
    }


def compact_labels(segments: np.ndarray) -> np.ndarray:
    """A label map in the smallest integer type that holds it, as the cache stores it: int16
    up to 32,767 regions (half of an entry's bytes were the int32 map), int32 beyond;
    :func:`to_graph` makes it int64 again."""
    return segments.astype(np.int16 if int(segments.max(initial=0)) < 2**15 else np.int32)


def _rle_size(annotation: dict) -> tuple[int, int] | None:
    """``(height, width)`` of an annotation's RLE mask; None for polygons or no mask."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, dict):
        return tuple(int(v) for v in segmentation["size"])
    return None


def to_graph(entry: dict) -> RegionGraph:
    """An entry as the data contract's :class:`RegionGraph` (image as float in [0, 1])."""
    fields = dict(entry)
    fields["image"] = entry["image"].float().div_(255.0)
    fields["segments"] = entry["segments"].long()
    return RegionGraph(**fields)
