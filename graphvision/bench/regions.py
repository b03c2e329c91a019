"""``python -m graphvision.bench regions``: region-graph speed and quality of graphvision's
default path against PyG's ``ToSLIC`` + a k-NN graph and scikit-image's ``slic`` +
``rag_mean_color``, on real photos with instance masks (coco_tiny's val split by default)."""

from __future__ import annotations

import argparse
import functools
import logging
import time
from pathlib import Path

import numpy as np

from graphvision.bench.common import BenchmarkInputError, coco_region_settings, coco_root, median_ms

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images", help="folder of images (default: $GRAPHVISION_COCO_TINY/val2017)"
    )
    parser.add_argument(
        "--annotations",
        help="COCO instances JSON for those images (default: coco_tiny's val annotations)",
    )
    parser.add_argument("--limit", type=int, default=20, help="images to use (default 20)")
    parser.add_argument("--n-segments", type=int, nargs="+", default=[100, 200, 400])


def load_benchmark_images(
    images: str | None, annotations: str | None, limit: int
) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """``[(path, rgb, truth)]``: the first ``limit`` images at native size (``[H, W, 3]``
    uint8) and their instance label maps ``[H, W]`` (0 = background, larger objects painted
    first). Without ``images``, coco_tiny's val split (``$GRAPHVISION_COCO_TINY``)."""
    from graphvision.data.coco import read_coco
    from graphvision.data.images import load_rgb
    from graphvision.data.objects import ann_to_mask
    from graphvision.regions.quality import instance_label_map

    if images is None:
        root = coco_root(None)
        images = str(root / "val2017")
        annotations = annotations or str(root / "annotations/instances_val2017.json")
    if annotations is None:
        raise BenchmarkInputError("--annotations COCO.json is needed for ASA and boundary recall")
    index = read_coco(annotations, images)
    out = []
    for img in index.images[:limit]:
        rgb = load_rgb(img.file, (img.width, img.height))
        h, w = rgb.shape[:2]
        by_area = sorted(img.annotations, key=lambda a: -a.get("area", 0))  # small on top
        masks = [
            ann_to_mask(a["segmentation"], img.height, img.width)
            for a in by_area
            if a.get("segmentation")
        ]
        truth = instance_label_map([m for m in masks if m.shape == (h, w)], (h, w))
        out.append((img.file, rgb, truth))
    return out


@functools.cache
def default_region_config(n_segments: int):
    """The region settings of ``conf/data/coco.yaml`` with ``n_segments`` replaced."""
    from graphvision.regions import RegionConfig

    return RegionConfig(**{**coco_region_settings(), "n_segments": n_segments})


def decoding_comparison(data: list) -> dict:
    """The cache's path (a JPEG decoded at reduced scale, ``conf/data/coco.yaml``'s region
    settings) against full-size decoding with 4 SLIC iterations (the path before): the
    mean region count and ASA of each on ``data`` (:func:`load_benchmark_images`), and how
    many photos were decoded at reduced scale."""
    import dataclasses

    from graphvision.data.images import decode_image
    from graphvision.regions import RegionConfig, image_to_regions
    from graphvision.regions.quality import achievable_segmentation_accuracy

    now = RegionConfig(**coco_region_settings())
    paths = {
        "reduced_decoding": now,
        "full_size_4_iterations": dataclasses.replace(now, max_num_iter=4),
    }
    counts: dict = {k: [] for k in paths}
    asa: dict = {k: [] for k in paths}
    reduced = 0
    for path, rgb, truth in data:
        small, full = decode_image(path, rgb.shape[1::-1], now.size)
        if full != rgb.shape[1::-1]:
            raise ValueError(
                f"{path}: reduced decoding gave the full size {full}, not {rgb.shape[1::-1]}"
            )
        reduced += small.shape[0] < rgb.shape[0]
        for name, image in (("reduced_decoding", small), ("full_size_4_iterations", rgb)):
            segments = image_to_regions(image, paths[name])["segments"]
            counts[name].append(int(segments.max()) + 1)
            asa[name].append(
                achievable_segmentation_accuracy(native_labels((segments, rgb.shape[:2])), truth)
            )
    return {
        "photos": len(data),
        "decoded_at_reduced_scale": reduced,
        **{
            k: {
                "regions": round(float(np.mean(counts[k])), 2),
                "asa": round(float(np.mean(asa[k])), 4),
            }
            for k in paths
        },
    }


def graphvision_regions(rgb: np.ndarray, n_segments: int) -> tuple[np.ndarray, tuple[int, int]]:
    """graphvision's default path (``image_to_regions`` with the COCO config's settings:
    resize to the working resolution, SLIC, adjacency, descriptors, edge features).

    Returns:
        the label map at the working resolution and the native ``(H, W)``, which
        :func:`native_labels` resizes it to (untimed) for the quality measures.
    """
    from graphvision.regions import image_to_regions

    segments = image_to_regions(rgb, default_region_config(n_segments))["segments"]
    return segments, rgb.shape[:2]


def native_labels(labels) -> np.ndarray:
    """A label map at native size: a ``(labels, (H, W))`` pair from a working resolution is
    resized (nearest); a native map is returned as it is."""
    from PIL import Image

    if isinstance(labels, tuple):
        segments, (h, w) = labels
        return np.asarray(Image.fromarray(segments.astype(np.int32)).resize((w, h), Image.NEAREST))
    return labels


def knn_edges(pos, k: int = 8):
    """The edges PyG's ``KNNGraph(k)`` builds (each node's ``k`` nearest others, as
    ``neighbour -> node``), in plain torch: ``KNNGraph`` needs the compiled pyg-lib or
    torch-cluster, which this project does not install. On a few hundred centroids either
    costs microseconds next to the segmentation.

    Shapes:
        pos ``[N, 2]`` -> ``[2, N * min(k, N - 1)]``.
    """
    import torch

    dist = torch.cdist(pos, pos)
    dist.fill_diagonal_(float("inf"))
    nbr = dist.topk(min(k, pos.size(0) - 1), largest=False).indices  # (N, k)
    target = torch.arange(pos.size(0)).repeat_interleave(nbr.size(1))
    return torch.stack([nbr.reshape(-1), target])


def pyg_toslic_knn(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    """PyG's ``ToSLIC`` at native size plus a k=8 nearest-neighbour graph; the label map."""
    import torch
    from torch_geometric.transforms import ToSLIC

    image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)  # what ToSLIC expects
    data = ToSLIC(n_segments=n_segments, add_seg=True)(image)
    data.edge_index = knn_edges(data.pos, k=8)
    return data.seg.view(rgb.shape[:2]).numpy()


def skimage_slic_rag(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    """scikit-image's ``slic`` and ``graph.rag_mean_color`` at native size; the label map."""
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


def run(args) -> dict:
    """Median ms per image, mean ASA, boundary recall (2 px) and region count of every
    method at every ``n_segments``, and graphvision's speed-ups and ASA difference."""
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
                labels = native_labels(labels)  # not timed: only the quality measures need it
                asa.append(achievable_segmentation_accuracy(labels, truth))
                br.append(boundary_recall(labels, truth, tolerance=2))
                count.append(len(np.unique(labels)))
            row[name] = {
                "ms": round(median_ms(times), 2),
                "asa": round(float(np.mean(asa)), 4),
                "boundary_recall": round(float(np.mean(br)), 4),
                "regions": round(float(np.mean(count)), 1),
            }
        gv = row["graphvision"]["ms"]
        row["speedup_vs_pyg_toslic_knn"] = round(row["pyg_toslic_knn"]["ms"] / gv, 1)
        row["speedup_vs_skimage_slic_rag"] = round(row["skimage_slic_rag"]["ms"] / gv, 1)
        row["asa_minus_pyg"] = round(row["graphvision"]["asa"] - row["pyg_toslic_knn"]["asa"], 4)
        results[str(n)] = row
    return {"n_segments": results, "images": len(data), "decoding": decoding_comparison(data)}


def summary(result: dict) -> str:
    d = result["decoding"]
    lines = [
        f"\nconf/data/coco.yaml's path ({d['decoded_at_reduced_scale']} of {d['photos']} photos "
        f"decoded at reduced scale): {d['reduced_decoding']['regions']} regions, ASA "
        f"{d['reduced_decoding']['asa']:.4f}; full-size decoding with 4 SLIC iterations: "
        f"{d['full_size_4_iterations']['regions']} regions, ASA {d['full_size_4_iterations']['asa']:.4f}"
    ]
    for n, row in result["n_segments"].items():
        lines += [
            f"\nn_segments={n}",
            f"{'method':<18} {'ms/img':>8} {'ASA':>7} {'BR@2':>7} {'regions':>8}",
        ]
        for name in METHODS:
            r = row[name]
            lines.append(
                f"{name:<18} {r['ms']:>8.1f} {r['asa']:>7.4f} {r['boundary_recall']:>7.4f} "
                f"{r['regions']:>8.0f}"
            )
        lines.append(
            f"graphvision is {row['speedup_vs_pyg_toslic_knn']}x faster than pyg_toslic_knn and "
            f"{row['speedup_vs_skimage_slic_rag']}x faster than skimage_slic_rag; "
            f"ASA - pyg ASA = {row['asa_minus_pyg']:+.4f}"
        )
    return "\n".join(lines)
