"""``python -m graphvision.bench prepare``: pre-processing throughput of a COCO-layout root
(coco_tiny by default), or of an image folder (``--folder``, such as CIFAR-10), with 1, 2 and
all cores' worker processes (``--workers``), what one worker spends per image stage by stage
(JPEG decoding at full and at reduced scale, resize, regions, targets, cache key, writing),
the disk taken per 1,000 cached images, loading the same from the cache, and what these
extrapolate to for COCO 2017's 118,287 training images (a folder: for all its images); at
``conf/data/coco.yaml``'s region settings (a folder: ``conf/experiment/cifar10.yaml``'s) or
those given (``--size``, ``--n-segments``, ``--backend``)."""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from graphvision.bench.common import BenchmarkInputError, coco_region_settings, coco_root

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="COCO-layout root (default: $GRAPHVISION_COCO_TINY)")
    parser.add_argument(
        "--folder",
        help="an image folder ROOT/{train,val}/<class>/ instead of "
        "COCO (regions of conf/experiment/cifar10.yaml)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="images per split (default: all; a folder: as many of each class)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="working resolution (default: conf/data/coco.yaml's)",
    )
    parser.add_argument(
        "--n-segments",
        type=int,
        default=None,
        help="regions per image (default: conf/data/coco.yaml's)",
    )
    parser.add_argument(
        "--backend", default=None, help="skimage | opencv | grid (default: conf/data/coco.yaml's)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="worker processes to time besides 1, the baseline (default: 2 and every core)",
    )
    parser.add_argument(
        "--stage-images",
        type=int,
        default=40,
        help="images timed stage by stage in this process (0: none)",
    )


#: images in COCO 2017's training split, for the extrapolation
COCO_TRAIN_IMAGES = 118_287


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    import resource

    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_times(jobs, regions, objects, cache_dir: Path) -> dict:
    """Milliseconds per image of each pre-processing stage, one image after another in
    this process (median over the images): decoding at full size (what the cache did
    before it decoded JPEGs at reduced scale) and at reduced scale, the resize to the
    working resolution, regions (SLIC and the graph), object targets, the cache key, and
    encoding and writing the entry."""
    import torch

    from graphvision.data.cache import entry_path, save_entry
    from graphvision.data.images import decode_image
    from graphvision.data.objects import object_targets
    from graphvision.data.pipeline import graph_tensors
    from graphvision.regions.graph import region_graph
    from graphvision.regions.superpixels import resize_image, slic_superpixels

    times: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        value = fn(*args)
        times.setdefault(name, []).append(1000 * (time.perf_counter() - started))
        return value

    for job in jobs:
        timed("decode_full_size", decode_image, job.path, job.expected_size)
        rgb, size = timed("decode_reduced", decode_image, job.path, job.expected_size, regions.size)
        image = timed("resize", resize_image, rgb, regions.size)
        graph = timed(
            "regions",
            lambda im: region_graph(
                im, slic_superpixels(im, regions), regions.edges, regions.k, regions.knn_colour
            ),
            image,
        )
        key = timed("cache_key", job.key, regions, objects)
        entry = graph_tensors({"image": image, **graph}, job.image_id)  # as build_entry's
        if job.category_ids:  # COCO's objects (an image folder's photos have a class alone)
            index = {cid: i for i, cid in enumerate(job.category_ids)}
            targets = timed(
                "targets",
                object_targets,
                list(job.annotations),
                *size,
                index,
                graph["segments"],
                objects,
            )
            entry.update({k: torch.from_numpy(v) for k, v in targets.items()})
        timed("write", save_entry, entry, entry_path(cache_dir, key))
    out = {name: round(statistics.median(ms), 2) for name, ms in times.items()}
    out["total_reduced"] = round(sum(v for k, v in out.items() if k != "decode_full_size"), 2)
    return out


def folder_region_settings() -> dict:
    """``experiment=cifar10``'s regions (over ``data=image_folder``'s)."""
    from graphvision.bench.common import composed_regions

    return composed_regions("experiment=cifar10")


def region_settings(args) -> dict:
    """The ``regions`` block measured (COCO's or the folder's) with the command's changes."""
    regions = folder_region_settings() if args.folder else coco_region_settings()
    given = {"size": args.size, "n_segments": args.n_segments, "backend": args.backend}
    return {**regions, **{k: v for k, v in given.items() if v is not None}}


def datamodule(args, regions: dict, cache: Path, workers: int):
    """The DataModule whose ``prepare_data`` is timed: COCO's, or an image folder's with
    ``--limit`` images of each class per split."""
    if not args.folder:
        from graphvision.data import CocoDataModule

        return CocoDataModule(
            root=str(coco_root(args.root)),
            cache_dir=str(cache),
            prepare_workers=workers,
            regions=regions,
            in_memory=False,
            limit_images=args.limit,
        )
    from graphvision.data import ImageFolderDataModule

    if not (Path(args.folder) / "train").is_dir():
        raise BenchmarkInputError(f"--folder {args.folder}: no train/ folder (ROOT/train/<class>/)")
    per_class = {"train": args.limit, "val": args.limit} if args.limit else None
    return ImageFolderDataModule(
        root=args.folder,
        cache_dir=str(cache),
        prepare_workers=workers,
        regions=regions,
        in_memory=False,
        per_class=per_class,
    )


def run(args) -> dict:
    """Images per second building the cache with each number of workers (each into an
    empty cache), the stages of one worker, the disk per 1,000 entries, loading every entry
    back, and the extrapolation to COCO 2017's training split."""
    from graphvision.data.datamodule import available_cores

    regions = region_settings(args)
    cores = available_cores()
    workers_list = sorted(set(args.workers or [2, cores]) | {1})  # 1: the baseline, always
    log.info("prepare: %s, regions %s, workers %s", args.folder or args.root, regions, workers_list)
    out: dict = {"regions": regions, "cores": cores, "workers": workers_list}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in workers_list:
            cache = Path(tmp) / f"cache{workers}"
            dm = datamodule(args, regions, cache, workers)
            images = sum(len(dm.split_jobs(split)) for split in dm.splits)
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            dm.prepare_data()
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            out[f"build_{workers}_workers"] = {
                "images": images,
                "seconds": round(seconds, 2),
                "images_per_s": round(images / seconds, 2),
                "images_per_s_per_worker": round(images / seconds / workers, 2),
                # CPU time of this process and its finished workers: what an image costs,
                # whatever else the machine runs (a shared machine's wall time varies 2x)
                "cpu_ms_per_image": round(1000 * cpu / images, 2),
            }
        entries = list(cache.glob("**/*.gvc"))
        out["disk_mb_per_1000_images"] = round(
            sum(e.stat().st_size for e in entries) / len(entries) * 1000 / 2**20, 1
        )
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
        if args.stage_images:
            jobs = [j for split in dm.splits for j in dm.split_jobs(split)][: args.stage_images]
            stage_dir = Path(tmp) / "stages"
            stage_dir.mkdir()
            out["stage_ms_per_image"] = stage_times(jobs, dm.regions, dm.objects, stage_dir)
    b1 = out["build_1_workers"]["images_per_s"]
    for workers in workers_list[1:]:
        out[f"ratio_{workers}_vs_1_workers"] = round(
            out[f"build_{workers}_workers"]["images_per_s"] / b1, 2
        )
    out["ratio_cache_vs_build_1_worker"] = round(out["load_from_cache"]["images_per_s"] / b1, 1)
    most = max(workers_list)
    if args.folder:  # every image of the folder's two splits, in minutes
        from graphvision.data import ImageFolderDataModule

        full = ImageFolderDataModule(root=args.folder)
        images = sum(len(full.jobs(split)) for split in full.splits)
        out["whole_folder"] = extrapolation(out, images, most, "minutes", 60, 1)
    else:
        out["coco_train2017"] = extrapolation(out, COCO_TRAIN_IMAGES, most, "hours", 3600, 2)
    return out


def extrapolation(out: dict, images: int, most: int, unit: str, seconds: int, digits: int):
    """How long ``images`` take to build with 1 and with ``most`` workers (in ``unit``, of
    ``seconds`` each) at the measured rates, and the disk they take."""
    rate_1 = out["build_1_workers"]["images_per_s"]
    rate_most = out[f"build_{most}_workers"]["images_per_s"]
    return {
        "images": images,
        f"{unit}_1_worker": round(images / rate_1 / seconds, digits),
        f"{unit}_{most}_workers": round(images / rate_most / seconds, digits),
        "disk_gb": round(out["disk_mb_per_1000_images"] * images / 1000 / 1024, 2),
    }


def summary(result: dict) -> str:
    cache = result["load_from_cache"]["images_per_s"]
    lines = [f"\nprepare ({result['regions_per_image']} regions/img, {result['cores']} cores):"]
    for workers in result["workers"]:
        build = result[f"build_{workers}_workers"]
        ratio = f" ({result[f'ratio_{workers}_vs_1_workers']}x 1 worker)" if workers > 1 else ""
        lines.append(
            f"  {workers} worker(s): {build['images_per_s']} img/s, "
            f"{build['images_per_s_per_worker']} img/s per worker{ratio}, "
            f"{build['cpu_ms_per_image']} CPU ms per image"
        )
    lines.append(
        f"  load from cache {cache} img/s ({result['ratio_cache_vs_build_1_worker']}x "
        f"building with 1 worker); {result['disk_mb_per_1000_images']} MB per 1,000 "
        "cached images"
    )
    if "stage_ms_per_image" in result:
        stages = result["stage_ms_per_image"]
        lines.append(
            "  one worker, ms per image: " + ", ".join(f"{k} {v}" for k, v in stages.items())
        )
    most = max(result["workers"])
    if "whole_folder" in result:
        whole = result["whole_folder"]
        lines.append(
            f"  the whole folder ({whole['images']:,} images): {whole['minutes_1_worker']} "
            f"min with 1 worker, {whole[f'minutes_{most}_workers']} min with {most}; "
            f"{whole['disk_gb']} GB"
        )
        return "\n".join(lines)
    coco = result["coco_train2017"]
    lines.append(
        f"  COCO train2017 ({coco['images']:,} images): {coco['hours_1_worker']} h with 1 "
        f"worker, {coco[f'hours_{most}_workers']} h with {most}; {coco['disk_gb']} GB"
    )
    return "\n".join(lines)
