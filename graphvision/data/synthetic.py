"""Procedural scenes of coloured shapes on textured backgrounds, written as COCO
(:func:`write_split`) or as an image folder of one object per image (:func:`write_folder`).

Deterministic by seed: scene ``i`` of a split is drawn from ``default_rng([seed, split, i])``
(folder image ``i`` of class ``k`` from ``default_rng([seed, split, k, i])``), so any subset
can be regenerated identically. Objects are drawn in order and may occlude earlier ones; an
annotation's mask is the object's visible part (a polygon when nothing covers it, an RLE
when something does), as in COCO. :func:`generate_once` writes a dataset into its folder
(:func:`generated_root`, named after its settings) once, marking it complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

DEFAULT_SHAPES = ("circle", "square", "triangle")
DEFAULT_COLOURS = {"red": (215, 45, 40), "green": (40, 170, 60), "blue": (45, 80, 215)}


def category_names(shapes=DEFAULT_SHAPES, colours=DEFAULT_COLOURS) -> list[str]:
    """Category names in id order: ``"red circle"``, ``"red square"``, ..."""
    return [f"{c} {s}" for c in colours for s in shapes]


def class_folder(name: str) -> str:
    """The image-folder class (folder name) of a category: ``"red circle"`` -> ``red_circle``."""
    return name.replace(" ", "_")


def settings_digest(settings) -> str:
    """Ten hex digits naming a generated dataset's folder after the settings that made it
    (SHA-1 of their sorted JSON; tuples count as lists)."""
    blob = json.dumps(settings, sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def generated_root(data_dir: str, kind: str, settings) -> Path:
    """Where a generated dataset lives: ``data_dir/<kind>/<settings digest>``."""
    return Path(data_dir) / kind / settings_digest(settings)


def generate_once(root: str | Path, write: Callable[[], None], settings: dict) -> Path:
    """Runs ``write()`` to fill ``root`` unless a complete copy is already there; then marks
    it complete (``root/COMPLETE``, holding ``settings``), so that an interrupted run
    starts again. Runs sharing ``root`` take turns (a lock file beside it): a second one
    waits for the first to finish writing instead of writing the same files again."""
    from filelock import FileLock, Timeout

    root = Path(root)
    done = root / "COMPLETE"
    if done.is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root.parent / f".{root.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is writing %s; waiting for it", root)
        lock.acquire()
    try:
        if not done.is_file():  # not written by another process while this one waited
            write()
            done.write_text(json.dumps(settings))
    finally:
        lock.release()
    return root


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple]:
    if shape == "circle":
        k, phase = 32, 0.0
    elif shape == "square":
        k, phase, r = 4, math.pi / 4, r * 1.2
    elif shape == "triangle":
        k, phase, r = 3, -math.pi / 2, r * 1.25
    else:
        raise ValueError(f"unknown shape {shape!r}: use circle, square or triangle")
    return [
        (
            cx + r * math.cos(phase + angle + 2 * math.pi * i / k),
            cy + r * math.sin(phase + angle + 2 * math.pi * i / k),
        )
        for i in range(k)
    ]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted base colour, low-frequency noise, stripes or checks, and pixel noise."""
    base = rng.uniform(90, 190) + rng.uniform(-25, 25, size=3)
    coarse = rng.normal(0, 18, size=(5, 5, 3))
    low = np.stack(
        [
            np.asarray(
                Image.fromarray(coarse[..., c].astype(np.float32)).resize(
                    (size, size), Image.BICUBIC
                )
            )
            for c in range(3)
        ],
        -1,
    )
    yy, xx = np.mgrid[0:size, 0:size]
    period, theta = rng.uniform(6, 20), rng.uniform(0, math.pi)
    if rng.random() < 0.5:
        texture = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
    else:
        texture = np.sign(np.sin(xx * 2 * math.pi / period) * np.sin(yy * 2 * math.pi / period))
    texture = texture[..., None] * rng.uniform(5, 20)
    return base + low + texture + rng.normal(0, 6, size=(size, size, 3))


def render_scene(
    rng: np.random.Generator,
    size: int = 128,
    shapes=DEFAULT_SHAPES,
    colours=DEFAULT_COLOURS,
    min_objects: int = 2,
    max_objects: int = 6,
    min_radius: float = 0.09,
    max_radius: float = 0.2,
    max_hidden: float = 0.5,
) -> tuple[np.ndarray, list[dict]]:
    """One scene: ``[size, size, 3]`` uint8 image and its objects, in drawing order, each
    ``{"category": index, "polygon": [x0, y0, ...], "visible": bool mask}``."""
    colour_list = list(colours.values())
    img = _background(rng, size)
    drawn: list[dict] = []
    target = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(target * 20):
        if len(drawn) == target:
            break
        c, s = int(rng.integers(len(colour_list))), int(rng.integers(len(shapes)))
        r = rng.uniform(min_radius, max_radius) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        poly = _shape_polygon(shapes[s], cx, cy, r, rng.uniform(-0.5, 0.5))
        canvas = Image.new("L", (size, size), 0)
        ImageDraw.Draw(canvas).polygon(poly, fill=1)
        mask = np.asarray(canvas, dtype=bool)
        if mask.sum() < 16 or any(
            (o["visible"] & ~mask).sum() < (1 - max_hidden) * o["visible"].sum() for o in drawn
        ):
            continue  # would hide too much of an earlier object
        for o in drawn:
            o["visible"] = o["visible"] & ~mask
        colour = np.array(colour_list[c], dtype=np.float64) + rng.uniform(-25, 25, size=3)
        shade = np.linspace(-12, 12, size)[None, :, None] * rng.choice([-1, 1])
        pixels = colour + shade + rng.normal(0, 8, size=(size, size, 3))
        img = np.where(mask[..., None], pixels, img)
        drawn.append(
            {
                "category": c * len(shapes) + s,
                "polygon": [round(v, 2) for p in poly for v in p],
                "visible": mask.copy(),
                "full_area": int(mask.sum()),
            }
        )
    for o in drawn:
        o["occluded"] = bool(o["visible"].sum() < o["full_area"])
    return np.clip(img, 0, 255).astype(np.uint8), drawn


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    from pycocotools import mask as mask_utils

    visible = obj["visible"]
    ys, xs = np.nonzero(visible)
    bbox = [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]
    if obj["occluded"]:
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = [obj["polygon"]]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category"] + 1,
        "segmentation": segmentation,
        "area": int(visible.sum()),
        "bbox": bbox,
        "iscrowd": 0,
    }


def write_split(
    root: str | Path, split: str, num_images: int, seed: int, split_index: int, **scene_kwargs
) -> Path:
    """Writes ``root/{split}/*.png`` and ``root/annotations/instances_{split}.json``."""
    root = Path(root)
    shapes = scene_kwargs.get("shapes", DEFAULT_SHAPES)
    colours = scene_kwargs.get("colours", DEFAULT_COLOURS)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, split_index, i])
        img, objects = render_scene(rng, **scene_kwargs)
        name = f"{i:06d}.png"
        Image.fromarray(img).save(root / split / name)
        images.append(
            {"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]}
        )
        for obj in objects:
            annotations.append(_annotation(obj, len(annotations) + 1, i + 1))
    cats = [
        {"id": k + 1, "name": n, "supercategory": "shape"}
        for k, n in enumerate(category_names(shapes, colours))
    ]
    out = root / "annotations" / f"instances_{split}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    os.replace(tmp, out)
    log.info(
        "synthetic %s: wrote %d images, %d objects to %s", split, num_images, len(annotations), root
    )
    return out


def write_folder(
    root: str | Path, split: str, per_class: int, seed: int, split_index: int, size: int = 128
) -> Path:
    """Writes ``root/{split}/<class>/*.png``: ``per_class`` one-object scenes of every
    category (:func:`class_folder` names its folder)."""
    root = Path(root)
    for k, name in enumerate(category_names()):
        folder = root / split / class_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        colour, shape = name.split(" ")
        for i in range(per_class):
            img, _ = render_scene(
                np.random.default_rng([seed, split_index, k, i]),
                size=size,
                shapes=(shape,),
                colours={colour: DEFAULT_COLOURS[colour]},
                min_objects=1,
                max_objects=1,
            )
            Image.fromarray(img).save(folder / f"{i:05d}.png")
    log.info("synthetic folder %s: wrote %d images per class to %s", split, per_class, root)
    return root / split
