"""Using a trained model on images: :class:`Predictor` loads a checkpoint once and predicts
on image after image (the one forward path of ``predict``, ``bench predict`` and the
notebook); :class:`Prediction` is one image's result, typed, with ``to_json()``. Also the
images of a path (:func:`list_images`) and the user's boxes (:func:`read_boxes`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from graphvision.data.coco import CocoImage, read_coco
from graphvision.data.contract import RegionGraph
from graphvision.data.images import IMAGE_SUFFIXES, load_rgb
from graphvision.data.objects import ObjectConfig
from graphvision.data.pipeline import ImageJob, build_entry, to_graph
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


@dataclass
class Prediction:
    """One image's prediction: the photo's size and the working size (width, height), the
    region graph's size, and the task's typed prediction (``result``: for scene graphs a
    :class:`~graphvision.tasks.scene_graph.prediction.SceneGraphPrediction`), plus what
    pictures need (the graph, the raw ``outputs`` with ``attention``, the decoded
    ``photo``)."""

    image: str
    size: tuple[int, int]
    working_size: tuple[int, int]
    regions: int
    edges: int
    result: Any
    graph: RegionGraph = field(repr=False)
    outputs: dict = field(repr=False)
    photo: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        """``predict``'s JSON record."""
        return {
            "image": self.image,
            "size": list(self.size),
            "working_size": list(self.working_size),
            "regions": self.regions,
            "edges": self.edges,
            **self.result.to_json(),
        }

    def draw(self, path: str | Path) -> None:
        """The PNG of :func:`~graphvision.viz.draw_prediction` at ``path``."""
        from graphvision.viz import draw_prediction

        draw_prediction(self, path)


class Predictor:
    """A trained model ready to predict: its network in eval mode on ``device``, the region
    and object settings it was trained with, and ``options`` (``conf/predict.yaml``'s
    :data:`OPTIONS`: how many labels to list, thresholds).

    ``predict(image)`` runs decoding (:meth:`read`), the region graph (:meth:`region_graph`),
    the network (:meth:`infer`) and the task's typed prediction, each a method of its own
    so that benchmarks time them from outside (``python -m graphvision.bench predict``).
    """

    def __init__(self, module, options: dict | None = None) -> None:
        self.module = module.eval()
        self.task = module.net.task
        data_cfg = module.hparams.get("data_config") or {}
        self.regions = RegionConfig(**(data_cfg.get("regions") or {}))
        self.objects = ObjectConfig(**(data_cfg.get("objects") or {}))
        self.options = {**default_options(), **(options or {})}
        self.annotations: dict[str, CocoImage] = {}
        self.category_ids: tuple[int, ...] = ()

    @classmethod
    def from_checkpoint(
        cls, ckpt_path: str | Path, device: str | torch.device = "cpu", **options
    ) -> Predictor:
        """Loads ``ckpt_path`` (:func:`~graphvision.checkpoint.load_module`) on ``device``."""
        from graphvision.checkpoint import load_module

        return cls(load_module(ckpt_path, map_location=device), options)

    @property
    def device(self) -> torch.device:
        return self.module.device

    def use_annotations(self, ann_file: str | Path, image_dir: str | Path) -> None:
        """A COCO instances file naming the images to predict on: their annotated objects are
        then predicted beside the truth (the file's categories must be the model's)."""
        index = read_coco(ann_file, image_dir)
        if index.category_names != self.module.hparams.info.get("categories"):
            raise ValueError(f"{ann_file}: its categories differ from those the model predicts")
        self.annotations = {img.file.name: img for img in index.images}
        self.category_ids = tuple(c["id"] for c in index.categories)

    def read(self, path: Path) -> np.ndarray:
        """The photo ``[H, W, 3]`` uint8 (at its annotated size, if annotated)."""
        annotation = self.annotations.get(path.name)
        return load_rgb(path, (annotation.width, annotation.height) if annotation else None)

    def region_graph(self, path: Path, rgb: np.ndarray, boxes: dict | None = None) -> RegionGraph:
        """The region graph of a photo, with its annotated objects, or the user's ``boxes``
        (:func:`read_boxes`), as its objects."""
        annotation = self.annotations.get(path.name)
        if annotation is None:  # the same target fields, with no objects
            categories = self.module.hparams.info.get("categories") or []
            job = ImageJob(str(path), 0, category_ids=tuple(range(1, len(categories) + 1)))
        else:
            job = ImageJob(
                str(path),
                annotation.id,
                (annotation.width, annotation.height),
                tuple(annotation.annotations),
                self.category_ids,
            )
        graph = to_graph(build_entry(job, self.regions, self.objects, rgb=rgb))
        if boxes is not None:
            given_objects(graph, boxes, path, (rgb.shape[1], rgb.shape[0]))
        return graph

    @torch.no_grad()
    def infer(self, graph: RegionGraph, mode: str | None = None) -> dict[str, torch.Tensor]:
        """The network's outputs on one graph, with the CLS token's attention, on the CPU;
        the task finds what the graph does not give when it asks to
        (:meth:`~graphvision.tasks.Task.wants_detection`)."""
        follow = list(self.task.follow_batch)
        batch = Batch.from_data_list([graph], follow_batch=follow).to(self.device)
        detect = self.task.wants_detection(batch, mode)
        out = self.module.net(batch, return_attention=True, detect=detect)
        return {k: v.cpu() for k, v in out.items()}

    def predict(
        self,
        image: str | Path,
        boxes: dict | None = None,
        mode: str | None = None,
    ) -> Prediction:
        """The prediction of one image file. ``boxes``: its objects, given
        (:func:`read_boxes`); ``mode``: one of the task's modes (None: what the inputs give:
        the task decides, e.g. for scene graphs finding the objects when none are given).

        Raises:
            UnreadableImageError: the file is no image.
            ValueError: a box outside the photo, or a mode the inputs do not allow.
        """
        path = Path(image)
        rgb = self.read(path)
        graph = self.region_graph(path, rgb, boxes)
        out = self.infer(graph, mode)
        size = (rgb.shape[1], rgb.shape[0])
        settings = {
            **self.options,
            "size": size,
            "annotated": path.name in self.annotations,
            "labels_given": boxes is not None and boxes["labels"] is not None,
        }
        return Prediction(
            image=str(path),
            size=size,
            working_size=tuple(reversed(graph.image.shape[1:])),
            regions=graph.num_nodes,
            edges=region_pairs(graph.edge_index),
            result=self.task.prediction(out, graph, settings, mode),
            graph=graph,
            outputs=out,
            photo=rgb,
        )


def default_options() -> dict:
    """:data:`OPTIONS` as ``conf/predict.yaml`` sets them."""
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    defaults = OmegaConf.load(Path(CONFIG_DIR) / "predict.yaml")
    return {k: defaults[k] for k in OPTIONS}
