"""``python -m graphvision.bench predict``: milliseconds per image of ``predict`` on a folder
of photos (coco_tiny's validation photos by default) with the model loaded once, split into
decoding, regions (resize, SLIC, region graph), the network (backbone, GNN, sequence stage
and heads) and grouping (finding the objects in the region graph, with the object and
relation heads on them), plus building the JSON record; drawing the PNG is left out."""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

log = logging.getLogger(__name__)

PARTS = ("decode", "regions", "network", "grouping", "record")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by graphvision.train")
    parser.add_argument(
        "--images", help="a folder of photos (default: $GRAPHVISION_COCO_TINY/val2017)"
    )
    parser.add_argument("--limit", type=int, default=40, help="photos to time (default 40)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )


def run(args) -> dict:
    """Per photo, after one warm-up photo: the seconds of each part of ``predict_image``
    (``sgdet``: no annotations); medians and means in ms, and grouping's share of the
    network's time."""
    import torch
    from omegaconf import OmegaConf

    from graphvision.bench.common import coco_root
    from graphvision.checkpoint import load_module
    from graphvision.data.coco import ObjectConfig
    from graphvision.inference import OPTIONS, list_images, predict_image
    from graphvision.regions import RegionConfig
    from graphvision.utils import CONFIG_DIR

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.images) if args.images else coco_root(None) / "val2017"
    images = list_images(folder)[: args.limit + 1]
    module = load_module(args.ckpt).eval()
    data_cfg = module.hparams.get("data_config") or {}
    regions = RegionConfig(**(data_cfg.get("regions") or {}))
    objects = ObjectConfig(**(data_cfg.get("objects") or {}))
    defaults = OmegaConf.load(Path(CONFIG_DIR) / "predict.yaml")
    options = {k: defaults[k] for k in OPTIONS}
    log.info("predict: %d photos from %s, model %s", len(images) - 1, folder, args.ckpt)
    per_image: list[dict] = []
    found = []
    for i, path in enumerate(images):
        timings: dict = {}
        t0 = time.perf_counter()
        record, *_ = predict_image(module, path, regions, objects, None, options, timings=timings)
        timings["total"] = time.perf_counter() - t0
        if i:  # the first photo warms up
            per_image.append(timings)
            found.append(len(record.get("objects", [])))
    parts = {}
    for name in (*PARTS, "total"):
        values = [1000 * t.get(name, 0.0) for t in per_image]
        parts[name] = {
            "median_ms": round(statistics.median(values), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
    share = parts["grouping"]["mean_ms"] / parts["network"]["mean_ms"]
    return {
        "images": len(per_image),
        "folder": str(folder),
        "working_size": list(regions.size),
        "n_segments": regions.n_segments,
        "objects_per_image": round(statistics.fmean(found), 2) if found else 0.0,
        "ms_per_image": parts,
        "grouping_over_network": round(share, 4),
    }


def summary(result: dict) -> str:
    parts = result["ms_per_image"]
    lines = [
        f"predict on {result['images']} photos ({result['folder']}), "
        f"{result['objects_per_image']} objects found per photo:",
        "| part | median ms | mean ms |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {k} | {v['median_ms']:.2f} | {v['mean_ms']:.2f} |" for k, v in parts.items()]
    lines.append(f"grouping / network (means): {result['grouping_over_network']:.3f}")
    return "\n".join(lines)
