"""Predict: ``python -m graphvision.predict ckpt_path=PATH image=FILE_OR_FOLDER
[annotations=COCO.json | boxes=BOXES.json]``.

Writes, per image, ``<name>.json`` (the photo's size and the working size, the region
graph's size and the task's prediction record: for scene graphs the scene labels with
probabilities, each region's top classes and the CLS token's attention to it, and the scene
graph: objects found in the region graph (``sgdet``), or the user's boxes (``sgcls`` /
``predcls``), or the annotated objects next to the ground truth, with masks as COCO RLE at
the photo's size and every ordered pair's relation; for image folders the classes) and
``<name>.png`` (the task's picture over the photo at its own size: the region graph coloured
by attention, and for scene graphs the objects' outlines and top relations).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from graphvision.checkpoint import load_module
from graphvision.data.coco import ObjectConfig, read_coco
from graphvision.data.images import UnreadableImageError
from graphvision.inference import OPTIONS, list_images, predict_image, read_boxes
from graphvision.regions import RegionConfig
from graphvision.utils import CONFIG_DIR, rank_zero_logging, reports_usage_errors

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> list[Path]:
    module = load_module(cfg.ckpt_path)
    module.eval()
    data_cfg = module.hparams.get("data_config") or {}
    regions = RegionConfig(**(data_cfg.get("regions") or {}))
    objects = ObjectConfig(**(data_cfg.get("objects") or {}))
    images = list_images(cfg.image)
    coco = None
    if cfg.get("annotations"):
        if cfg.get("boxes"):
            raise ValueError("pass annotations= or boxes=, not both")
        index = read_coco(cfg.annotations, Path(images[0]).parent)
        coco = ({img.file.name: img for img in index.images}, [c["id"] for c in index.categories])
        if index.category_names != module.hparams.info.get("categories"):
            raise ValueError(
                f"{cfg.annotations}: its categories differ from those {cfg.ckpt_path} predicts"
            )
    boxes = {}
    if cfg.get("boxes"):
        categories = module.hparams.info.get("categories") or []
        if "sgcls" not in module.net.task.modes:
            raise ValueError(f"boxes= needs a scene-graph model; {cfg.ckpt_path} is not one")
        boxes = read_boxes(cfg.boxes, images, categories)
    options = {k: cfg[k] for k in OPTIONS}
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(images, desc="predict", unit="img", disable=None):
        try:
            record, graph, out, rgb = predict_image(
                module, path, regions, objects, coco, options, boxes.get(path.name)
            )
        except UnreadableImageError as err:
            if len(images) == 1:
                raise
            log.warning("skipped %s", err)
            skipped.append(str(path))
            continue
        target = out_dir / f"{path.stem}.json"
        target.write_text(json.dumps(record, indent=1) + "\n")
        module.net.task.draw_prediction(record, graph, out, out_dir / f"{path.stem}.png", photo=rgb)
        written.append(target)
    if skipped:
        log.warning(
            "skipped %d of %d images that could not be read: %s", len(skipped), len(images), skipped
        )
    if not written:
        raise RuntimeError(f"no image under {cfg.image} could be read")
    return written


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@reports_usage_errors
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    written = predict(cfg)
    print(f"wrote {len(written)} prediction(s) (JSON + PNG) to {Path(cfg.out_dir).resolve()}")


if __name__ == "__main__":
    main()
