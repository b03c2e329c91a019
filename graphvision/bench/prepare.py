"""``python -m graphvision.bench prepare``: pre-processing throughput of a COCO-layout root
(coco_tiny by default) with 1 and 2 worker processes, and loading the same from the cache."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from graphvision.bench.common import coco_root

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="COCO-layout root (default: $GRAPHVISION_COCO_TINY)")
    parser.add_argument("--limit", type=int, default=None, help="images per split (default: all)")


def run(args) -> dict:
    """Images per second building the cache with 1 and 2 workers (each into an empty
    cache), loading every entry back, and the ratios between them."""
    from graphvision.data import CocoDataModule

    root = coco_root(args.root)
    log.info("prepare: %s", root)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            dm = CocoDataModule(
                root=str(root),
                cache_dir=str(Path(tmp) / f"cache{workers}"),
                prepare_workers=workers,
                in_memory=False,
                limit_images=args.limit,
            )
            images = sum(len(dm.split_jobs(split)) for split in dm.splits)
            t0 = time.perf_counter()
            dm.prepare_data()
            seconds = time.perf_counter() - t0
            out[f"build_{workers}_workers"] = {
                "images": images,
                "seconds": round(seconds, 2),
                "images_per_s": round(images / seconds, 2),
            }
        dm.setup("fit")
        loaded, t0 = 0, time.perf_counter()
        for split in dm.splits:
            for i in range(len(dm.datasets[split])):
                dm.datasets[split][i]
                loaded += 1
        seconds = time.perf_counter() - t0
        out["load_from_cache"] = {
            "images": loaded,
            "seconds": round(seconds, 3),
            "images_per_s": round(loaded / seconds, 1),
        }
    b1, b2 = out["build_1_workers"]["images_per_s"], out["build_2_workers"]["images_per_s"]
    out["ratio_2_vs_1_workers"] = round(b2 / b1, 2)
    out["ratio_cache_vs_build_1_worker"] = round(out["load_from_cache"]["images_per_s"] / b1, 1)
    return out


def summary(result: dict) -> str:
    b1 = result["build_1_workers"]["images_per_s"]
    b2 = result["build_2_workers"]["images_per_s"]
    cache = result["load_from_cache"]["images_per_s"]
    return (
        f"\nprepare: build 1 worker {b1} img/s, 2 workers {b2} img/s "
        f"({result['ratio_2_vs_1_workers']}x); load from cache {cache} img/s "
        f"({result['ratio_cache_vs_build_1_worker']}x building with 1 worker)"
    )
