"""``python -m graphvision.bench loader``: images per second that the training DataLoader
delivers as batched PyG graphs (from the cache on disk, with the configured augmentation,
``num_workers`` 0, 2, 4, ... as ``--workers`` lists them, page-locked with
``--pin-memory``, workers kept between epochs unless ``--no-persistent-workers``; with
``--device cuda`` each batch is also copied to the GPU) beside the training step's images
per second on one of its batches on ``--device`` in ``--precision``, measured in the same
run: ``loader / step`` above 1 means the loader keeps that device fed."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from graphvision.bench.common import require_device, time_steps
from graphvision.bench.train import full_step_of, on_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="training images in the loader")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="loader workers to time, e.g. 0 2 4 8 16 (default 0 2)",
    )
    parser.add_argument("--pin-memory", action="store_true", help="page-locked batches")
    parser.add_argument(
        "--persistent-workers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep workers between epochs (default: yes)",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where the step runs and (cuda) where batches are copied",
    )
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over the loader")
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps")
    add_override_argument(parser)


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """``--override``, repeatable, for the benchmarks of the training data path (this one and
    ``profile``): augmented training data unless told otherwise."""
    parser.add_argument(
        "--override",
        action="append",
        default=["data/augment=standard"],
        help="a Hydra override of the data or model (repeatable; default data/augment=standard)",
    )


def compose_training(data_dir: Path, args, **data):
    """The default training config with ``args.images`` training scenes under ``data_dir``,
    batches of ``args.batch_size``, ``args.override`` and the ``data.*`` settings given."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from graphvision.utils import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.data_dir={data_dir}",
                "paths.output_dir=.",
                f"data.num_train={args.images}",
                "data.num_val=1",
                f"data.batch_size={args.batch_size}",
                "data.prepare_workers=2",
                *(f"data.{k}={v}" for k, v in data.items()),
                *args.override,
            ],
        )


def loader_images_per_s(dm, epochs: int, device: str = "cpu") -> float:
    """Images per second over ``epochs`` passes of ``dm``'s training loader (each batch
    copied to ``device`` when it is a GPU), after one pass that starts its workers and
    fills their memory."""
    import torch

    loader = dm.train_dataloader()

    def take(batch):
        return batch.to(device, non_blocking=True) if device != "cpu" else batch

    for batch in loader:  # warm-up: workers started, entries read once
        take(batch)
    count, started = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            count += take(batch).num_graphs
    if device == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def run(args) -> dict:
    from hydra.utils import instantiate
    from torch_geometric.data import Batch

    require_device(args.device)
    out: dict = {
        "batch_size": args.batch_size,
        "images": args.images,
        "overrides": args.override,
        "pin_memory": args.pin_memory,
        "persistent_workers": args.persistent_workers,
        "device": args.device,
        "precision": args.precision,
    }
    with tempfile.TemporaryDirectory() as tmp:
        loaders = {}
        for workers in args.workers:
            cfg = compose_training(
                Path(tmp),
                args,
                num_workers=workers,
                pin_memory=args.pin_memory,
                persistent_workers=args.persistent_workers,
            )
            dm = instantiate(cfg.data)
            dm.prepare_data()
            dm.setup("fit")
            out["augment"] = dm.augment is not None
            loaders[str(workers)] = loader_images_per_s(dm, args.epochs, args.device)
        module = instantiate(cfg.model, info=dm.info)
        graphs = [dm.datasets["train"][i] for i in range(args.batch_size)]
        batch = Batch.from_data_list(graphs, follow_batch=list(module.net.task.follow_batch))
        module, batch = on_device(module, batch, args)
        step_fn = full_step_of(module, batch, args.device, args.precision)
        step = statistics.median(time_steps(step_fn, repeats=args.repeats)[0])
    step_rate = args.batch_size / step
    # 4 significant digits, so that the ratios follow from the rates as reported even when a
    # busy machine makes the step slow (1.45 img/s, not 1.5)
    out["step_images_per_s"] = float(f"{step_rate:.4g}")
    out["loader_images_per_s"] = {w: float(f"{r:.4g}") for w, r in loaders.items()}
    out["loader_over_step"] = {w: round(r / step_rate, 2) for w, r in loaders.items()}
    return out


def summary(result: dict) -> str:
    lines = [
        f"\nloader (augment={result['augment']}, batch {result['batch_size']}, pin_memory="
        f"{result['pin_memory']}, persistent_workers={result['persistent_workers']}) beside the "
        f"training step on {result['device']} ({result['precision']}): "
        f"{result['step_images_per_s']} img/s"
    ]
    lines += [
        f"  num_workers={w:>2}: {r} img/s = {result['loader_over_step'][w]:.2f}x the step"
        for w, r in result["loader_images_per_s"].items()
    ]
    return "\n".join(lines)
