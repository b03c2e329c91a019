"""Predict: ``python -m graphvision.predict ckpt_path=PATH image=FILE_OR_FOLDER
[annotations=COCO.json | boxes=BOXES.json]``.

Writes, per image, ``<name>.json`` (:meth:`~graphvision.predictor.Prediction.to_json`:
the photo's size and the working size, the region graph's size and the task's prediction:
for scene graphs the scene labels with probabilities, each region's top classes and the CLS
token's attention to it, and the scene graph: objects found in the region graph, or the
user's boxes, or the annotated objects next to the ground truth, with masks as COCO RLE at
the photo's size and every ordered pair's relation; for image folders the classes) and
``<name>.png`` (the picture over the photo at its own size: the region graph coloured by
attention, and for scene graphs the objects' outlines and top relations).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from graphvision.data.images import UnreadableImageError
from graphvision.predictor import OPTIONS, Predictor, list_images, read_boxes
from graphvision.utils import CONFIG_DIR, rank_zero_logging, reports_usage_errors

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> list[Path]:
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, **{k: cfg[k] for k in OPTIONS})
    images = list_images(cfg.image)
    if cfg.get("annotations") and cfg.get("boxes"):
        raise ValueError("pass annotations= or boxes=, not both")
    if cfg.get("annotations"):
        predictor.use_annotations(cfg.annotations, Path(images[0]).parent)
    boxes = {}
    if cfg.get("boxes"):
        if not predictor.task.takes_boxes:
            raise ValueError(f"boxes= needs a scene-graph model; {cfg.ckpt_path} is not one")
        categories = predictor.module.hparams.info.get("categories") or []
        boxes = read_boxes(cfg.boxes, images, categories)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(images, desc="predict", unit="img", disable=None):
        try:
            prediction = predictor.predict(path, boxes.get(path.name), cfg.get("mode"))
        except UnreadableImageError as err:
            if len(images) == 1:
                raise
            log.warning("skipped %s", err)
            skipped.append(str(path))
            continue
        target = out_dir / f"{path.stem}.json"
        target.write_text(json.dumps(prediction.to_json(), indent=1) + "\n")
        prediction.draw(out_dir / f"{path.stem}.png")
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
