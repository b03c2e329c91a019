"""``python -m graphvision.bench superpixels --folder CIFAR10``: the superpixel-graph benchmark
(``experiment=cifar10_superpixels``) on this machine, each number beside a named baseline
measured in the same run:

- pre-processing: photos per second of one process building the experiment's cache entries
  (decoding, SLIC at 32x32, descriptors, the 8-nearest graph on position and colour, edge
  features) against PyG's ``ToSLIC`` on the same decoded photos plus the k=8 nearest
  neighbours of the centroids (``KNNGraph``'s edges, in torch: ``KNNGraph`` itself needs
  pyg-lib or torch-cluster, which do not install here); the minutes per worker for the
  folder's every photo (50,000 for CIFAR-10);
- training: graphs per second of a training step (forward, loss, backward, AdamW) of each
  benchmark model (``--models``) on one batch of the folder's photos, against one named
  baseline for every row: the benchmark's GatedGCN (4 layers, width 68, mean readout) written
  with PyG's own gated layer (``ResGatedGraphConv``, which projects every edge's source
  features with the edge features: ``[E, C + e]`` products), on the same batch, the two
  steps taking turns.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from graphvision.bench.common import BenchmarkInputError, time_steps

log = logging.getLogger(__name__)

#: the width of the PyG GatedGCN baseline: the benchmark GatedGCN's
BASELINE_WIDTH = 68
#: the benchmark models (``experiments/cifar10_superpixels.sh``'s rows), as Hydra overrides
MODELS = {
    "gated_gcn": ["model/gnn=gated_gcn", "model.dim=68", "model.gnn.num_layers=4"],
    "gps": ["model/gnn=gps", "model.dim=56", "model.gnn.num_layers=3"],
    "transformer": ["model/gnn=none", "model.dim=72", "model/sequence=transformer"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folder", required=True, help="the image folder ROOT/{train,val}/<class>/ (CIFAR-10)"
    )
    parser.add_argument("--limit", type=int, default=200, help="photos pre-processed (200)")
    parser.add_argument("--batch-size", type=int, default=128, help="graphs per step (128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps of each (5)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))


def pyg_regions(path: str):
    """PyG's path: the photo decoded, ``ToSLIC`` (mean colour and centroid of each segment,
    ``n_segments=100`` as the experiment asks) and the k=8 nearest centroids."""
    import numpy as np
    import torch
    from PIL import Image
    from torch_geometric.transforms import ToSLIC

    from graphvision.bench.regions import knn_edges

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)
    data = ToSLIC(n_segments=100)(image)
    data.edge_index = knn_edges(data.pos, k=8)
    return data


def preprocessing(args, regions) -> dict:
    """Photos/s of graphvision's cache entries and of PyG's path, taking turns photo by
    photo over the same ``--limit`` photos (after one warm-up of each)."""
    from graphvision.data import ImageFolderDataModule
    from graphvision.data.objects import ObjectConfig
    from graphvision.data.pipeline import build_entry

    dm = ImageFolderDataModule(
        root=args.folder, regions=regions.as_dict(), per_class={"train": None, "val": None}
    )
    jobs = dm.split_jobs("train")
    if not jobs:
        raise BenchmarkInputError(f"--folder {args.folder}: no photos in train/<class>/")
    step = max(len(jobs) // args.limit, 1)
    chosen = jobs[::step][: args.limit]  # spread over the classes
    objects = ObjectConfig()
    build_entry(chosen[0], regions, objects)
    pyg_regions(chosen[0].path)
    ours, theirs, count = 0.0, 0.0, []
    for job in chosen:
        t0 = time.perf_counter()
        entry = build_entry(job, regions, objects)
        t1 = time.perf_counter()
        pyg_regions(job.path)
        ours, theirs = ours + t1 - t0, theirs + time.perf_counter() - t1
        count.append(entry["x"].shape[0])
    total = len(jobs) + len(dm.split_jobs("val"))
    rate = len(chosen) / ours
    return {
        "photos": len(chosen),
        "regions_per_photo": round(statistics.mean(count), 1),
        "graphvision_photos_per_s": round(rate, 1),
        "pyg_toslic_knn_photos_per_s": round(len(chosen) / theirs, 1),
        "speedup_vs_pyg": round(theirs / ours, 2),
        "folder_photos": total,
        "folder_minutes_one_worker": round(total / rate / 60, 1),
    }


def pyg_gated_baseline(width: int, layers: int, classes: int, edge_dim: int):
    """GatedGCN with PyG's gated layer: node encoder, ``layers`` pre-norm residual
    ``ResGatedGraphConv`` blocks reading a ``edge_dim``-wide encoded edge feature, mean
    readout, class head (the benchmark model's shape, PyG's layer inside)."""
    import torch
    from torch import nn
    from torch_geometric.nn import ResGatedGraphConv, global_mean_pool

    from graphvision.regions import BENCHMARK_DESCRIPTORS, EDGE_FEATURES, descriptor_columns

    columns = descriptor_columns(BENCHMARK_DESCRIPTORS)

    class PyGGatedGCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(len(columns), width)
            self.edges = nn.Linear(len(EDGE_FEATURES), edge_dim)
            self.convs = nn.ModuleList(
                ResGatedGraphConv(width, width, edge_dim=edge_dim) for _ in range(layers)
            )
            self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
            self.head = nn.Linear(width, classes)

        def forward(self, batch) -> torch.Tensor:
            x = self.encode(batch.x[:, columns])
            e = self.edges(batch.edge_attr)
            for conv, norm in zip(self.convs, self.norms):
                x = x + torch.nn.functional.gelu(conv(norm(x), batch.edge_index, e))
            return self.head(global_mean_pool(x, batch.batch))

    return PyGGatedGCN()


def training(args) -> dict:
    """Graphs/s of each benchmark model's training step against PyG's GatedGCN, one batch."""
    import torch

    from graphvision.bench.train import full_step_of, module_and_batch

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            overrides = [
                "experiment=cifar10_superpixels",
                f"data.root={args.folder}",
                *MODELS[name],
            ]
            module, batch = module_and_batch(None, args.batch_size, Path(tmp), overrides)
            ours = full_step_of(module, batch)
            width = module.hparams.dim
            baseline = pyg_gated_baseline(BASELINE_WIDTH, 4, len(module.net.task.classes), 16)
            opt = torch.optim.AdamW(baseline.parameters(), lr=1e-3, fused=True)

            def pyg_step(baseline=baseline, opt=opt, batch=batch) -> None:
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(baseline(batch), batch.label)
                loss.backward()
                opt.step()

            mine, theirs = time_steps(ours, pyg_step, repeats=args.repeats)
            n = batch.num_graphs
            rows[name] = {
                "parameters": sum(p.numel() for p in module.net.parameters()),
                "graphs_per_s": round(n / statistics.median(mine), 1),
                "pyg_gated_gcn_graphs_per_s": round(n / statistics.median(theirs), 1),
                "pyg_gated_gcn_parameters": sum(p.numel() for p in baseline.parameters()),
                "speedup_vs_pyg_gated_gcn": round(
                    statistics.median(theirs) / statistics.median(mine), 2
                ),
                "regions_per_graph": round(batch.num_nodes / n, 1),
                "edges_per_graph": round(batch.num_edges / n, 1),
                "width": width,
            }
    return rows


def run(args) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from graphvision.regions import RegionConfig
    from graphvision.utils import CONFIG_DIR

    if not (Path(args.folder) / "train").is_dir():
        raise BenchmarkInputError(f"--folder {args.folder}: no train/ folder (ROOT/train/<class>/)")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=cifar10_superpixels"])
    regions = RegionConfig(**cfg.data.regions)
    log.info("superpixels: pre-processing %d photos of %s at %s", args.limit, args.folder, regions)
    out = {"regions": regions.as_dict(), "preprocessing": preprocessing(args, regions)}
    out["batch_size"] = args.batch_size
    out["training"] = training(args)
    return out


def summary(result: dict) -> str:
    p = result["preprocessing"]
    lines = [
        f"\npre-processing ({p['photos']} photos, {p['regions_per_photo']} regions each, one "
        f"process): graphvision {p['graphvision_photos_per_s']} photos/s (knn graph, 13 "
        f"descriptors, 5 edge features), PyG ToSLIC + 8-NN {p['pyg_toslic_knn_photos_per_s']} "
        f"photos/s -> {p['speedup_vs_pyg']}x; the folder's {p['folder_photos']:,} photos: "
        f"{p['folder_minutes_one_worker']} min on one worker",
        f"\ntraining step, batch {result['batch_size']} (graphs/s; baseline for every row: "
        f"GatedGCN with PyG's ResGatedGraphConv, width {BASELINE_WIDTH}, 4 layers, same batch):",
    ]
    for name, r in result["training"].items():
        lines.append(
            f"  {name:<12} {r['parameters']:>8,} params {r['graphs_per_s']:>8.1f} graphs/s | PyG "
            f"GatedGCN {r['pyg_gated_gcn_parameters']:,} params {r['pyg_gated_gcn_graphs_per_s']:.1f} "
            f"graphs/s -> {r['speedup_vs_pyg_gated_gcn']}x ({r['regions_per_graph']} regions, "
            f"{r['edges_per_graph']} edges per graph)"
        )
    return "\n".join(lines)
