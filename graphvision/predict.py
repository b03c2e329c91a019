"""Predict: ``python -m graphvision.predict ckpt_path=PATH image=FILE_OR_FOLDER [annotations=COCO.json]``.

Writes, per image, ``<name>.json`` (the region graph's size and the task's prediction
record: for scene graphs the scene labels with probabilities, each region's top classes and
the CLS token's attention to it and, with ``annotations``, the objects and relations; for
image folders the classes) and ``<name>.png`` (the task's picture: the region graph coloured
by attention, and for scene graphs with annotations the predicted scene graph).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from graphvision.checkpoint import load_module
from graphvision.data.cache import build_entry, to_graph
from graphvision.data.coco import ObjectConfig, read_coco
from graphvision.data.images import IMAGE_SUFFIXES, UnreadableImageError
from graphvision.regions import RegionConfig
from graphvision.utils import CONFIG_DIR, rank_zero_logging

log = logging.getLogger(__name__)


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


def predict_image(
    module,
    path: Path,
    regions: RegionConfig,
    objects: ObjectConfig,
    coco: tuple | None,
    top_k: int,
    threshold: float,
) -> tuple[dict, object, dict]:
    """Runs the model on one image; returns the JSON record, the graph and the raw outputs.

    ``coco``: ``({file name: CocoImage}, category ids)`` of an annotation file naming the
    image, whose objects and relations the task then predicts beside the annotated ones;
    ``top_k`` and ``threshold``: see ``conf/predict.yaml``.
    """
    task = module.net.task
    records, category_ids = coco or ({}, ())
    job = task.image_job(path, records.get(path.name), category_ids)
    graph = to_graph(build_entry(job, regions, objects))
    batch = Batch.from_data_list([graph], follow_batch=list(task.follow_batch))
    with torch.no_grad():
        out = module.net(batch.to(module.device), return_attention=True)
    out = {k: v.cpu() for k, v in out.items()}
    record = {
        "image": str(path),
        "size": list(reversed(graph.image.shape[1:])),
        "regions": graph.num_nodes,
        "edges": int(graph.edge_index.size(1)) // 2,
        **task.prediction_record(out, graph, top_k, threshold),
    }
    return record, graph, out


def predict(cfg: DictConfig) -> list[Path]:
    module = load_module(cfg.ckpt_path)
    module.eval()
    data_cfg = module.hparams.get("data_config") or {}
    regions = RegionConfig(**(data_cfg.get("regions") or {}))
    objects = ObjectConfig(**(data_cfg.get("objects") or {}))
    images = list_images(cfg.image)
    coco = None
    if cfg.get("annotations"):
        index = read_coco(cfg.annotations, Path(images[0]).parent)
        coco = ({img.file.name: img for img in index.images}, [c["id"] for c in index.categories])
        if index.category_names != module.hparams.info.get("categories"):
            raise ValueError(
                f"{cfg.annotations}: its categories differ from those {cfg.ckpt_path} predicts"
            )
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(images, desc="predict", unit="img", disable=None):
        try:
            record, graph, out = predict_image(
                module, path, regions, objects, coco, cfg.top_k, cfg.threshold
            )
        except UnreadableImageError as err:
            if len(images) == 1:
                raise
            log.warning("skipped %s", err)
            skipped.append(str(path))
            continue
        target = out_dir / f"{path.stem}.json"
        target.write_text(json.dumps(record, indent=1) + "\n")
        module.net.task.draw_prediction(record, graph, out, out_dir / f"{path.stem}.png")
        written.append(target)
    if skipped:
        log.warning(
            "skipped %d of %d images that could not be read: %s", len(skipped), len(images), skipped
        )
    if not written:
        raise RuntimeError(f"no image under {cfg.image} could be read")
    return written


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    written = predict(cfg)
    print(f"wrote {len(written)} prediction(s) (JSON + PNG) to {Path(cfg.out_dir).resolve()}")


if __name__ == "__main__":
    main()
