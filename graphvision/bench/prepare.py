"""``python -m graphvision.bench prepare``: pre-processing throughput of a COCO-layout root
(coco_tiny by default) with 1 and 2 worker processes, and loading the same from the cache,
at ``conf/data/coco.yaml``'s region settings or those given (``--size``, ``--n-segments``,
``--backend``)."""

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
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="working resolution (default: conf/data/coco.yaml's)")  # fmt: skip
    parser.add_argument("--n-segments", type=int, default=None,
                        help="regions per image (default: conf/data/coco.yaml's)")  # fmt: skip
    parser.add_argument("--backend", default=None, help="skimage | opencv | grid (default: "
                        "conf/data/coco.yaml's)")  # fmt: skip


def region_settings(args) -> dict:
    """``conf/data/coco.yaml``'s ``regions`` block with the command's changes."""
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    regions = OmegaConf.to_container(OmegaConf.load(f"{CONFIG_DIR}/data/coco.yaml").regions)
    given = {"size": args.size, "n_segments": args.n_segments, "backend": args.backend}
    return {**regions, **{k: v for k, v in given.items() if v is not None}}


def run(args) -> dict:
    """Images per second building the cache with 1 and 2 workers (each into an empty
    cache), loading every entry back, and the ratios between them."""
    from graphvision.data import CocoDataModule

    root = coco_root(args.root)
    regions = region_settings(args)
    log.info("prepare: %s, regions %s", root, regions)
    out: dict = {"regions": regions}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            dm = CocoDataModule(
                root=str(root),
                cache_dir=str(Path(tmp) / f"cache{workers}"),
                prepare_workers=workers,
                regions=regions,
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
        loaded, nodes, t0 = 0, 0, time.perf_counter()
        for split in dm.splits:
            for i in range(len(dm.datasets[split])):
                nodes += dm.datasets[split][i].num_nodes
                loaded += 1
        seconds = time.perf_counter() - t0
        out["load_from_cache"] = {
            "images": loaded,
            "seconds": round(seconds, 3),
            "images_per_s": round(loaded / seconds, 1),
        }
        out["regions_per_image"] = round(nodes / loaded, 2)
    b1, b2 = out["build_1_workers"]["images_per_s"], out["build_2_workers"]["images_per_s"]
    out["ratio_2_vs_1_workers"] = round(b2 / b1, 2)
    out["ratio_cache_vs_build_1_worker"] = round(out["load_from_cache"]["images_per_s"] / b1, 1)
    return out


def summary(result: dict) -> str:
    b1 = result["build_1_workers"]["images_per_s"]
    b2 = result["build_2_workers"]["images_per_s"]
    cache = result["load_from_cache"]["images_per_s"]
    return (
        f"\nprepare ({result['regions_per_image']} regions/img): build 1 worker {b1} img/s, 2 workers {b2} img/s "
        f"({result['ratio_2_vs_1_workers']}x); load from cache {cache} img/s "
        f"({result['ratio_cache_vs_build_1_worker']}x building with 1 worker)"
    )
