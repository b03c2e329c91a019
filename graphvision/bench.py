"""Benchmarks: ``python -m graphvision.bench {regions,prepare,train} --out FILE.json``.

Every number is measured in the same run as the baseline it is compared with, on this
machine, and printed as a ratio; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("graphvision.bench")

DEFAULT_COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_tiny"


def _coco_root(given: str | None) -> Path:
    root = Path(given or os.environ.get("GRAPHVISION_COCO_TINY", DEFAULT_COCO))
    if not (root / "annotations").is_dir():
        raise SystemExit(
            f"no COCO-layout root at {root}: pass --root / --images (or set GRAPHVISION_COCO_TINY)"
        )
    return root


def _median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds)


# ------------------------------------------------------------------------------ regions
def load_benchmark_images(images: str | None, annotations: str | None, limit: int):
    """``[(rgb, truth)]``: native-size images and their instance label maps (0 = background)."""
    from graphvision.data.coco import ann_to_mask, read_coco
    from graphvision.data.images import load_rgb
    from graphvision.regions.quality import instance_label_map

    if images is None:
        root = _coco_root(None)
        images, annotations = (
            str(root / "val2017"),
            annotations or str(root / "annotations/instances_val2017.json"),
        )
    if annotations is None:
        raise SystemExit("--annotations COCO.json is needed for ASA and boundary recall")
    index = read_coco(annotations, images)
    out = []
    for img in index.images[:limit]:
        rgb = load_rgb(img.file, (img.width, img.height))
        h, w = rgb.shape[:2]
        masks = [
            ann_to_mask(a["segmentation"], img.height, img.width)
            for a in sorted(
                img.annotations, key=lambda a: -a.get("area", 0)
            )  # large first, small on top
            if a.get("segmentation")
        ]
        truth = instance_label_map([m for m in masks if m.shape == (h, w)], (h, w))
        out.append((img.file.name, rgb, truth))
    return out


@functools.cache
def default_region_config(n_segments: int):
    """The region settings of ``conf/data/coco.yaml`` with ``n_segments`` replaced."""
    from omegaconf import OmegaConf

    from graphvision.regions import RegionConfig
    from graphvision.utils import CONFIG_DIR

    regions = OmegaConf.to_container(
        OmegaConf.load(Path(CONFIG_DIR) / "data" / "coco.yaml").regions
    )
    return RegionConfig(**{**regions, "n_segments": n_segments})


def graphvision_regions(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    """graphvision's default path (``image_to_regions`` with the COCO config's settings:
    resize to the working resolution, SLIC, adjacency, descriptors, edge features); returns
    the label map resized (nearest) to the native size, for the quality measures."""
    from graphvision.regions import image_to_regions

    segments = image_to_regions(rgb, default_region_config(n_segments))["segments"]
    return segments, rgb.shape[:2]


def _native(labels) -> np.ndarray:
    """Label maps from a working resolution are compared at native size (nearest)."""
    from PIL import Image

    if isinstance(labels, tuple):
        segments, (h, w) = labels
        return np.asarray(Image.fromarray(segments.astype(np.int32)).resize((w, h), Image.NEAREST))
    return labels


def knn_edges(pos, k: int = 8):
    """The edges PyG's ``KNNGraph(k)`` builds (each node's ``k`` nearest others, as
    ``neighbour -> node``), in plain torch: ``KNNGraph`` needs the compiled pyg-lib or
    torch-cluster, which this project does not install. On a few hundred centroids either
    costs microseconds next to the segmentation."""
    import torch

    dist = torch.cdist(pos, pos)
    dist.fill_diagonal_(float("inf"))
    nbr = dist.topk(min(k, pos.size(0) - 1), largest=False).indices  # (N, k)
    target = torch.arange(pos.size(0)).repeat_interleave(nbr.size(1))
    return torch.stack([nbr.reshape(-1), target])


def pyg_toslic_knn(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    import torch
    from torch_geometric.transforms import ToSLIC

    image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)  # what ToSLIC expects
    data = ToSLIC(n_segments=n_segments, add_seg=True)(image)
    data.edge_index = knn_edges(data.pos, k=8)
    return data.seg.view(rgb.shape[:2]).numpy()


def skimage_slic_rag(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    from skimage import graph
    from skimage.segmentation import slic

    labels = slic(rgb, n_segments=n_segments, start_label=0)
    graph.rag_mean_color(rgb, labels)
    return labels


METHODS = {
    "graphvision": graphvision_regions,
    "pyg_toslic_knn": pyg_toslic_knn,
    "skimage_slic_rag": skimage_slic_rag,
}


def bench_regions(args) -> dict:
    from graphvision.regions.quality import achievable_segmentation_accuracy, boundary_recall

    data = load_benchmark_images(args.images, args.annotations, args.limit)
    log.info(
        "regions: %d images, native sizes, %s",
        len(data),
        sorted({d[1].shape[:2] for d in data})[:3],
    )
    results: dict = {}
    for n in args.n_segments:
        row = {}
        for name, fn in METHODS.items():
            fn(data[0][1], n)  # warm-up (imports, allocator)
            times, asa, br, count = [], [], [], []
            for _, rgb, truth in data:
                t0 = time.perf_counter()
                labels = fn(rgb, n)
                times.append(time.perf_counter() - t0)
                labels = _native(labels)  # not timed: only the quality measures need it
                asa.append(achievable_segmentation_accuracy(labels, truth))
                br.append(boundary_recall(labels, truth, tolerance=2))
                count.append(len(np.unique(labels)))
            row[name] = {
                "ms": round(_median_ms(times), 2),
                "asa": round(float(np.mean(asa)), 4),
                "boundary_recall": round(float(np.mean(br)), 4),
                "regions": round(float(np.mean(count)), 1),
            }
        gv = row["graphvision"]["ms"]
        row["speedup_vs_pyg_toslic_knn"] = round(row["pyg_toslic_knn"]["ms"] / gv, 1)
        row["speedup_vs_skimage_slic_rag"] = round(row["skimage_slic_rag"]["ms"] / gv, 1)
        row["asa_minus_pyg"] = round(row["graphvision"]["asa"] - row["pyg_toslic_knn"]["asa"], 4)
        results[str(n)] = row
        _print_regions(n, row)
    return {"n_segments": results, "images": len(data)}


def _print_regions(n: int, row: dict) -> None:
    print(f"\nn_segments={n}")
    print(f"{'method':<18} {'ms/img':>8} {'ASA':>7} {'BR@2':>7} {'regions':>8}")
    for name in METHODS:
        r = row[name]
        print(
            f"{name:<18} {r['ms']:>8.1f} {r['asa']:>7.4f} {r['boundary_recall']:>7.4f} {r['regions']:>8.0f}"
        )
    print(
        f"graphvision is {row['speedup_vs_pyg_toslic_knn']}x faster than pyg_toslic_knn and "
        f"{row['speedup_vs_skimage_slic_rag']}x faster than skimage_slic_rag; ASA - pyg ASA = {row['asa_minus_pyg']:+.4f}"
    )


# ------------------------------------------------------------------------------ prepare
def bench_prepare(args) -> dict:
    import torch

    from graphvision.data import CocoDataModule

    root = _coco_root(args.root)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            cache = Path(tmp) / f"cache{workers}"
            dm = CocoDataModule(
                root=str(root),
                cache_dir=str(cache),
                prepare_workers=workers,
                in_memory=False,
                limit_images=args.limit,
            )
            jobs = dm._limited(dm.jobs("train")) + dm._limited(dm.jobs("val"))
            t0 = time.perf_counter()
            dm.prepare_data()
            seconds = time.perf_counter() - t0
            out[f"build_{workers}_workers"] = {
                "images": len(jobs),
                "seconds": round(seconds, 2),
                "images_per_s": round(len(jobs) / seconds, 2),
            }
        dm.setup("fit")
        loaded, t0 = 0, time.perf_counter()
        for split in ("train", "val"):
            for i in range(len(dm.datasets[split])):
                g = dm.datasets[split][i]
                loaded += 1
        seconds = time.perf_counter() - t0
        assert isinstance(g.x, torch.Tensor)
        out["load_from_cache"] = {
            "images": loaded,
            "seconds": round(seconds, 3),
            "images_per_s": round(loaded / seconds, 1),
        }
        shutil.rmtree(tmp, ignore_errors=True)
    b1, b2 = out["build_1_workers"]["images_per_s"], out["build_2_workers"]["images_per_s"]
    out["ratio_2_vs_1_workers"] = round(b2 / b1, 2)
    out["ratio_cache_vs_build_1_worker"] = round(out["load_from_cache"]["images_per_s"] / b1, 1)
    print(
        f"\nprepare {root}: build 1 worker {b1} img/s, 2 workers {b2} img/s "
        f"({out['ratio_2_vs_1_workers']}x); load from cache {out['load_from_cache']['images_per_s']} img/s "
        f"({out['ratio_cache_vs_build_1_worker']}x building with 1 worker)"
    )
    return out


# ------------------------------------------------------------------------------ train
def _default_module_and_batch(
    n_segments: int, batch_size: int, tmp: Path, overrides: list[str] | None = None
):
    """The default config's model (plus ``overrides``, Hydra syntax) and one training batch
    of real synthetic scenes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from torch_geometric.data import Batch

    from graphvision.utils import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.data_dir={tmp}",
                "paths.output_dir=.",
                "data.num_train=32",
                "data.num_val=1",
                f"data.regions.n_segments={n_segments}",
                f"data.batch_size={batch_size}",
                "data.prepare_workers=2",
                *(overrides or []),
            ],
        )
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    graphs = [dm.datasets["train"][i] for i in range(batch_size)]
    batch = Batch.from_data_list(graphs, follow_batch=["obj_label", "rel_label"])
    module = instantiate(cfg.model, info=dm.info)
    return module, batch


def _time_steps(*steps, repeats: int) -> list[list[float]]:
    """Seconds of each step, ``repeats`` times; the steps take turns (after one warm-up
    each), so a change in the machine's load falls on all of them alike."""
    for step in steps:
        step()  # warm-up
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, seconds in zip(steps, times):
            t0 = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - t0)
    return times


def bench_train(args) -> dict:
    import torch

    out: dict = {"batch_size": args.batch_size, "overrides": args.override}
    with tempfile.TemporaryDirectory() as tmp:
        module, batch = _default_module_and_batch(
            100, args.batch_size, Path(tmp) / "d100", args.override
        )
        module.train()
        out["model"] = {
            "gnn": module.hparams.gnn.get("layer"),
            "sequence": module.hparams.sequence["_target_"].rsplit(".", 1)[-1],
        }
        opt = module.make_optimizer(fused=True)  # what configure_optimizers gives a CPU run

        def full_step():
            opt.zero_grad(set_to_none=True)
            out_ = module(batch)
            loss = sum(module.losses(out_, batch).values())
            loss.backward()
            opt.step()

        backbone = module.net.features
        bopt = torch.optim.AdamW(backbone.parameters(), lr=1e-4, fused=True)

        def backbone_step():
            bopt.zero_grad(set_to_none=True)
            backbone.feature_map(batch.image).mean().backward()
            bopt.step()

        fulls, bbs = _time_steps(full_step, backbone_step, repeats=args.repeats)
        full, bb = statistics.median(fulls), statistics.median(bbs)
        # each full step over the backbone step timed right after it
        pairs = sorted(f / b for f, b in zip(fulls, bbs))
        n = batch.num_graphs
        out["default"] = {
            "regions_per_image": round(batch.num_nodes / n, 1),
            "full_step_images_per_s": round(n / full, 1),
            "backbone_step_images_per_s": round(n / bb, 1),
            "full_over_backbone_time": round(full / bb, 3),
            "pair_ratio_min_max": [round(pairs[0], 3), round(pairs[-1], 3)],
        }
        print(
            f"\ntrain step, {out['model']}, batch {n}, {out['default']['regions_per_image']} "
            f"regions/img: full {n / full:.1f} img/s, backbone alone {n / bb:.1f} img/s -> "
            f"full/backbone time {full / bb:.3f}x (pair by pair {pairs[0]:.3f}-{pairs[-1]:.3f}x)"
        )
        scaling = []
        for k in args.regions:
            module, batch = _default_module_and_batch(
                k, args.batch_size, Path(tmp) / f"d{k}", args.override
            )
            module.train()
            opt = module.make_optimizer(fused=True)
            seconds = statistics.median(_time_steps(full_step, repeats=args.repeats)[0])
            scaling.append(
                {
                    "n_segments": k,
                    "regions_per_image": round(batch.num_nodes / batch.num_graphs, 1),
                    "ms_per_image": round(1000 * seconds / batch.num_graphs, 2),
                }
            )
            print(
                f"  n_segments={k:>5}: {scaling[-1]['regions_per_image']:>7.1f} regions/img, "
                f"{scaling[-1]['ms_per_image']:.2f} ms/img"
            )
        x = np.log([s["regions_per_image"] for s in scaling])
        y = np.log([s["ms_per_image"] for s in scaling])
        exponent = float(np.polyfit(x, y, 1)[0])
        out["scaling"] = scaling
        out["growth_exponent"] = round(exponent, 3)
        print(
            f"time per image grows as regions^{exponent:.3f} from {scaling[0]['regions_per_image']:.0f} to "
            f"{scaling[-1]['regions_per_image']:.0f} regions"
        )
    return out


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m graphvision.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regions", help="region-graph speed and quality vs PyG and scikit-image")
    p.add_argument("--out", required=True)
    p.add_argument("--images", help="folder of images (default: coco_tiny val2017)")
    p.add_argument("--annotations", help="COCO instances JSON for those images")
    p.add_argument("--limit", type=int, default=20, help="images to use (default 20)")
    p.add_argument("--n-segments", type=int, nargs="+", default=[100, 200, 400])
    p = sub.add_parser(
        "prepare", help="pre-processing throughput, 1 vs 2 workers, and cache loading"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--root", help="COCO-layout root (default: coco_tiny)")
    p.add_argument("--limit", type=int, default=None, help="images per split (default: all)")
    p = sub.add_parser(
        "train", help="full training step vs backbone alone; scaling in region count"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10, help="timed steps of each kind")
    p.add_argument("--regions", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override of the model measured, e.g. model/gnn=gatv2 (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    result = {"regions": bench_regions, "prepare": bench_prepare, "train": bench_train}[
        args.command
    ](args)
    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
