"""``python -m graphvision.bench loader``: images per second that the training DataLoader
delivers as batched PyG graphs (from the cache on disk, with the configured augmentation,
``num_workers`` 0, 2, ...) beside the training step's images per second on one of its
batches, measured in the same run: ``loader / step`` above 1 means the loader keeps up."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from graphvision.bench.common import time_steps
from graphvision.bench.train import full_step_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="training images in the loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over the loader")
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps")
    parser.add_argument(
        "--override",
        action="append",
        default=["data/augment=standard"],
        help="a Hydra override of the data or model (repeatable; default data/augment=standard)",
    )


def _compose(data_dir: Path, args, workers: int):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from graphvision.utils import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[
            f"paths.data_dir={data_dir}", "paths.output_dir=.", f"data.num_train={args.images}",
            "data.num_val=1", f"data.batch_size={args.batch_size}", f"data.num_workers={workers}",
            "data.prepare_workers=2", *args.override,
        ])  # fmt: skip


def loader_images_per_s(dm, epochs: int) -> float:
    """Images per second over ``epochs`` passes of ``dm``'s training loader, after one pass
    that starts its workers and fills their memory."""
    loader = dm.train_dataloader()
    for _ in loader:  # warm-up: workers started, entries read once
        pass
    count, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            count += batch.num_graphs
    return count / (time.perf_counter() - started)


def run(args) -> dict:
    from hydra.utils import instantiate
    from torch_geometric.data import Batch

    out: dict = {"batch_size": args.batch_size, "images": args.images, "overrides": args.override}
    with tempfile.TemporaryDirectory() as tmp:
        loaders = {}
        for workers in args.workers:
            cfg = _compose(Path(tmp), args, workers)
            dm = instantiate(cfg.data)
            dm.prepare_data()
            dm.setup("fit")
            out["augment"] = dm.augment is not None
            loaders[str(workers)] = loader_images_per_s(dm, args.epochs)
        module = instantiate(cfg.model, info=dm.info)
        graphs = [dm.datasets["train"][i] for i in range(args.batch_size)]
        batch = Batch.from_data_list(graphs, follow_batch=list(module.net.task.follow_batch))
        step = statistics.median(time_steps(full_step_of(module, batch), repeats=args.repeats)[0])
    step_rate = args.batch_size / step
    # 4 significant digits, so that the ratios follow from the rates as reported even when a
    # busy machine makes the step slow (1.45 img/s, not 1.5)
    out["step_images_per_s"] = float(f"{step_rate:.4g}")
    out["loader_images_per_s"] = {w: float(f"{r:.4g}") for w, r in loaders.items()}
    out["loader_over_step"] = {w: round(r / step_rate, 2) for w, r in loaders.items()}
    return out


def summary(result: dict) -> str:
    lines = [
        f"\nloader (augment={result['augment']}, batch {result['batch_size']}) beside the "
        f"training step: {result['step_images_per_s']} img/s"
    ]
    lines += [
        f"  num_workers={w:>2}: {r} img/s = {result['loader_over_step'][w]:.2f}x the step"
        for w, r in result["loader_images_per_s"].items()
    ]
    return "\n".join(lines)
