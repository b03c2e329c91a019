"""Using a trained model on images: one image's prediction record (``predict_image``), the
user's boxes (``read_boxes``), the images of a path. Shared by ``graphvision.predict`` and
``python -m graphvision.bench predict``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from graphvision.data.cache import build_entry, to_graph
from graphvision.data.coco import ObjectConfig
from graphvision.data.images import IMAGE_SUFFIXES, load_rgb
from graphvision.nn.grouping import all_pairs, box_memberships
from graphvision.regions import RegionConfig

#: ``conf/predict.yaml``'s settings that shape a prediction record
OPTIONS = (
    "top_k",
    "threshold",
    "top_objects",
    "object_threshold",
    "top_relations",
    "relation_threshold",
)


def region_pairs(edge_index: torch.Tensor) -> int:
    """The pairs of regions the graph joins, either way or both (an adjacency graph holds
    each pair twice, a k-nearest graph once or twice)."""
    lo, hi = edge_index.min(0).values, edge_index.max(0).values
    return int(torch.unique(torch.stack([lo, hi]), dim=1).size(1)) if edge_index.numel() else 0


def list_images(path: str | Path) -> list[Path]:
    """The image itself, or the images of a folder (sorted); a clear error if none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if files:
            return files
        raise FileNotFoundError(
            f"image={path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    raise FileNotFoundError(
        f"image={path} does not exist: pass an image file or a folder of images"
    )


def read_boxes(path: str | Path, images: list[Path], categories: list[str]) -> dict[str, dict]:
    """A boxes file: ``{"photo.jpg": [{"bbox": [x, y, w, h], "category": "dog"}, ...]}``
    (pixels of the photo; ``category`` optional). Returns, per image file name, the boxes
    ``[M, 4]`` and the labels (category indices, or None unless every box names one).

    Raises:
        ValueError: naming the file and entry, for an image not among ``images``, an entry
            that is not a list of objects with a 4-number ``bbox``, or an unknown category.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise FileNotFoundError(f"boxes={path} does not exist") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"boxes={path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f'boxes={path}: expected {{"image file name": [{{"bbox": [x, y, w, h]}}, ...]}}'
        )
    names = {p.name for p in images}
    index = {name: i for i, name in enumerate(categories)}
    out = {}
    for image, objects in data.items():
        if image not in names:
            raise ValueError(
                f"boxes={path}: entry {image!r} names no image given by image= "
                f"({len(names)} image(s), e.g. {sorted(names)[:3]})"
            )
        if not isinstance(objects, list) or not objects:
            raise ValueError(f"boxes={path}: entry {image!r} must be a non-empty list of objects")
        boxes, labels = [], []
        for k, obj in enumerate(objects):
            where = f"boxes={path}: entry {image!r}, object {k}"
            bbox = obj.get("bbox") if isinstance(obj, dict) else None
            if not (
                isinstance(bbox, list)
                and len(bbox) == 4
                and all(isinstance(v, int | float) for v in bbox)
            ):
                raise ValueError(
                    f"{where}: 'bbox' must be [x, y, width, height] in pixels, got {bbox!r}"
                )
            name = obj.get("category")
            if name is not None and name not in index:
                raise ValueError(
                    f"{where}: unknown category {name!r}; the model knows {len(categories)} "
                    f"(e.g. {categories[:5]})"
                )
            boxes.append([float(v) for v in bbox])
            labels.append(None if name is None else index[name])
        given = all(v is not None for v in labels)
        out[image] = {
            "boxes": torch.tensor(boxes),
            "labels": torch.tensor(labels) if given else None,
        }
    return out


def given_objects(graph, boxes: dict, path: Path, size: tuple[int, int]) -> None:
    """Puts the user's boxes into ``graph`` as its objects (their regions: those mostly
    inside each box), with every ordered pair as a relation to predict.

    Raises:
        ValueError: a box of zero area or not overlapping the photo, naming file and box.
    """
    width, height = size
    xywh = boxes["boxes"]
    for k, (x, y, w, h) in enumerate(xywh.tolist()):
        if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise ValueError(
                f"boxes: {path.name}, object {k}: box [{x}, {y}, {w}, {h}] has no area inside "
                f"the {width}x{height} photo"
            )
    norm = torch.stack(
        [
            xywh[:, 0] / width,
            xywh[:, 1] / height,
            (xywh[:, 0] + xywh[:, 2]) / width,
            (xywh[:, 1] + xywh[:, 3]) / height,
        ],
        1,
    )
    norm = norm.clamp(0, 1)
    index, weight = box_memberships(graph.segments, norm, graph.num_nodes)
    m = norm.size(0)
    graph.obj_box = norm
    graph.obj_region_index, graph.obj_region_weight = index, weight.float()
    graph.obj_label = (
        boxes["labels"] if boxes["labels"] is not None else torch.zeros(m, dtype=torch.long)
    )
    graph.rel_index = all_pairs(torch.zeros(m, dtype=torch.long))
    graph.rel_label = torch.zeros(graph.rel_index.size(1), dtype=torch.long)


def _clock(timings: dict | None, name: str, start: float, device) -> float:
    if timings is not None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - start
        return now
    return start


def predict_image(
    module,
    path: Path,
    regions: RegionConfig,
    objects: ObjectConfig,
    coco: tuple | None,
    options: dict,
    boxes: dict | None = None,
    timings: dict | None = None,
) -> tuple[dict, object, dict, np.ndarray]:
    """Runs the model on one image; returns the JSON record, the graph, the raw outputs and
    the decoded photo.

    ``coco``: ``({file name: CocoImage}, category ids)`` of an annotation file naming the
    image, whose objects and relations the task then predicts beside the annotated ones
    (``sgcls``); ``boxes``: the user's boxes of this image (:func:`read_boxes`: ``sgcls``, or
    ``predcls`` when they name their categories); with neither, a scene-graph model finds
    the objects itself (``sgdet``). ``options``: ``conf/predict.yaml``'s settings.
    ``timings``: seconds spent decoding, on regions, in the network and grouping regions
    into objects (the found instances' object and relation heads included), and building
    the record (masks encoded at the photo's size) are added to it.
    """
    task, device = module.net.task, module.device
    records, category_ids = coco or ({}, ())
    annotation = records.get(path.name)
    start = time.perf_counter()
    rgb = load_rgb(path, (annotation.width, annotation.height) if annotation else None)
    start = _clock(timings, "decode", start, device)
    job = task.image_job(path, annotation, category_ids)
    graph = to_graph(build_entry(job, regions, objects, rgb=rgb))
    size = (rgb.shape[1], rgb.shape[0])
    if boxes is not None:
        given_objects(graph, boxes, path, size)
    start = _clock(timings, "regions", start, device)
    detect = "sgdet" in task.modes and graph.num_objects == 0
    batch = Batch.from_data_list([graph], follow_batch=list(task.follow_batch)).to(device)
    with torch.no_grad():
        seq = module.net.encode(batch, return_attention=True)
        out = task(seq.cls, seq.tokens, batch)
        start = _clock(timings, "network", start, device)
        if detect:
            out.update(task.detect(out, seq.tokens, batch))
            start = _clock(timings, "grouping", start, device)
    out["attention"] = seq.attention
    out = {k: v.cpu() for k, v in out.items()}
    start = time.perf_counter()
    settings = {
        **options,
        "size": size,
        "annotated": annotation is not None,
        "labels_given": boxes is not None and boxes["labels"] is not None,
    }
    record = {
        "image": str(path),
        "size": list(size),
        "working_size": list(reversed(graph.image.shape[1:])),
        "regions": graph.num_nodes,
        "edges": region_pairs(graph.edge_index),
        **task.prediction_record(out, graph, settings),
    }
    _clock(timings, "record", start, device)
    return record, graph, out, rgb
