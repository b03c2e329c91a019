"""``python -m graphvision.bench train``: the full training step of the default model (or
one changed by ``--override``) against the backbone alone on the same batch, and how the
step's time grows with the number of regions per image; on the CPU or a CUDA device
(``--device``), in float32 or bf16 autocast (``--precision bf16-mixed``), with the backbone
compiled by ``torch.compile`` or not (``--compile``)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from graphvision.bench.common import BenchmarkInputError, require_device, time_steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps of each kind")
    parser.add_argument(
        "--regions",
        type=int,
        nargs="*",
        default=[100, 200, 400, 800, 1600],
        help="n_segments of the scaling rows (none: no scaling rows)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--precision",
        choices=["32", "bf16-mixed"],
        default="32",
        help="bf16-mixed: forward and losses under bf16 autocast, as "
        "trainer.precision=bf16-mixed runs them",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone (the CNN trunk) for both steps",
    )
    parser.add_argument(
        "--baseline",
        choices=["backbone", "cnn_baseline"],
        default="backbone",
        help="what the full step is compared with: the backbone's feature maps "
        "alone, or the whole training step of model=cnn_baseline (the CNN "
        "alone, with its heads and losses) on the same batch",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override of the model measured, e.g. model/gnn=gatv2 (repeatable)",
    )


def module_and_batch(
    n_segments: int | None, batch_size: int, data_dir: Path, overrides: list[str] | None = None
):
    """The default config's model (plus ``overrides``, Hydra syntax) and one training batch
    of ``batch_size`` images (synthetic scenes, or the first images of the data the overrides
    name, e.g. ``experiment=cifar10 data.root=...``) segmented into about ``n_segments``
    regions (None: the data config's own)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import open_dict
    from torch_geometric.data import Batch

    from graphvision.utils import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.data_dir={data_dir}",
                "paths.output_dir=.",
                f"data.batch_size={batch_size}",
                "data.prepare_workers=2",
                *(overrides or []),
            ],
        )
    with open_dict(cfg):
        if "num_train" in cfg.data:  # generated scenes: just enough of them
            cfg.data.num_train, cfg.data.num_val = max(32, batch_size), 1
        else:  # data on disk: its first images
            cfg.data.limit_images = max(32, batch_size)
        if n_segments is not None:
            cfg.data.regions.n_segments = n_segments
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    module = instantiate(cfg.model, info=dm.info)
    graphs = [dm.datasets["train"][i] for i in range(batch_size)]
    batch = Batch.from_data_list(graphs, follow_batch=list(module.net.task.follow_batch))
    return module, batch


def precision_context(device: str, precision: str = "32"):
    """What wraps the forward pass: bf16 autocast for ``bf16-mixed``, nothing for ``32``."""
    import torch

    if precision == "bf16-mixed":
        return lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _synced(step, device: str):
    """``step`` followed by waiting for the device, so that a timer sees its whole cost."""
    import torch

    if device != "cuda":
        return step

    def synced() -> None:
        step()
        torch.cuda.synchronize()

    return synced


def full_step_of(module, batch, device: str = "cpu", precision: str = "32"):
    """One training step as a function: forward and the weighted losses (under
    ``precision``), backward and the fused AdamW step that ``configure_optimizers`` gives
    a float32 run."""
    module.train()
    opt = module.make_optimizer(fused=True)
    autocast = precision_context(device, precision)

    def full_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = module.weighted_loss(module.losses(module(batch), batch))
        loss.backward()
        opt.step()

    return _synced(full_step, device)


def backbone_step_of(module, batch, device: str = "cpu", precision: str = "32"):
    """The backbone alone on the same images: forward (under ``precision``), backward,
    fused AdamW."""
    import torch

    backbone = module.net.features
    if not backbone.out_channels:
        raise BenchmarkInputError(
            "bench train times the network against its backbone alone, and "
            "model/backbone=none has none: use --baseline cnn_baseline with a backbone, or "
            "python -m graphvision.bench superpixels for the no-CNN models"
        )
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-4, fused=True)
    autocast = precision_context(device, precision)

    def backbone_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = sum(m.float().mean() for m in backbone.feature_maps(batch.image))
        loss.backward()
        opt.step()

    return _synced(backbone_step, device)


def on_device(module, batch, args):
    """``module`` and ``batch`` on ``args.device`` (checked by :func:`require_device` when
    the benchmark starts), the backbone compiled with ``--compile``."""
    import torch

    module, batch = module.to(args.device), batch.to(args.device)
    if args.compile and not hasattr(module.net.features, "body"):
        raise BenchmarkInputError("--compile compiles the backbone: model/backbone=none has none")
    if args.compile:
        module.net.features.body = torch.compile(module.net.features.body)
    return module, batch


def peak_memory_mb(step, device: str) -> float | None:
    """Peak device memory of one ``step`` in MiB (CUDA; None on the CPU)."""
    import torch

    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def run(args) -> dict:
    """Images per second of the full and the backbone step (their ratio, and its range
    pair by pair), then ms per image at every ``--regions`` count and the fitted exponent
    of time against regions."""
    require_device(args.device)
    out: dict = {
        "batch_size": args.batch_size,
        "overrides": args.override,
        "device": args.device,
        "precision": args.precision,
        "compile": args.compile,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "default"
        module, batch = module_and_batch(None, args.batch_size, data, args.override)
        module, batch = on_device(module, batch, args)
        out["model"] = {
            "gnn": (module.hparams.gnn or {}).get("_target_", "").rsplit(".", 1)[-1],
            "sequence": (module.hparams.sequence or {}).get("_target_", "").rsplit(".", 1)[-1],
        }
        out["image_size"] = list(batch.image.shape[-2:])
        out["baseline"] = args.baseline
        full_step = full_step_of(module, batch, args.device, args.precision)
        if args.baseline == "cnn_baseline":  # the same batch through the CNN alone
            cnn, _ = module_and_batch(
                None, args.batch_size, data, [*args.override, "model=cnn_baseline"]
            )
            cnn, _ = on_device(cnn, batch, args)
            backbone_step = full_step_of(cnn, batch, args.device, args.precision)
        else:
            backbone_step = backbone_step_of(module, batch, args.device, args.precision)
        started = time.perf_counter()
        full_step()  # the first step: compiling, allocating
        out["first_step_seconds"] = round(time.perf_counter() - started, 2)
        fulls, bbs = time_steps(full_step, backbone_step, repeats=args.repeats)
        full, bb = statistics.median(fulls), statistics.median(bbs)
        pairs = sorted(
            f / b for f, b in zip(fulls, bbs)
        )  # each full step over the next backbone one
        n = batch.num_graphs
        out["default"] = {
            "regions_per_image": round(batch.num_nodes / n, 1),
            "full_step_images_per_s": round(n / full, 1),
            "backbone_step_images_per_s": round(n / bb, 1),
            "full_over_backbone_time": round(full / bb, 3),
            "pair_ratio_min_max": [round(pairs[0], 3), round(pairs[-1], 3)],
            "full_step_peak_memory_mb": peak_memory_mb(full_step, args.device),
            "backbone_step_peak_memory_mb": peak_memory_mb(backbone_step, args.device),
        }
        scaling = []
        for k in args.regions:
            module, batch = module_and_batch(k, args.batch_size, Path(tmp) / f"d{k}", args.override)
            module, batch = on_device(module, batch, args)
            step = full_step_of(module, batch, args.device, args.precision)
            seconds = statistics.median(time_steps(step, repeats=args.repeats)[0])
            scaling.append(
                {
                    "n_segments": k,
                    "regions_per_image": round(batch.num_nodes / batch.num_graphs, 1),
                    "ms_per_image": round(1000 * seconds / batch.num_graphs, 2),
                }
            )
        out["scaling"] = scaling
        if len(scaling) >= 2:
            x = np.log([s["regions_per_image"] for s in scaling])
            y = np.log([s["ms_per_image"] for s in scaling])
            out["growth_exponent"] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out


def summary(result: dict) -> str:
    d, scaling = result["default"], result["scaling"]
    size = "x".join(str(v) for v in result["image_size"])
    lines = [
        f"\ntrain step on {result['device']} ({result['precision']}"
        f"{', backbone compiled' if result['compile'] else ''}), {result['model']}, batch "
        f"{result['batch_size']} at {size}, {d['regions_per_image']} regions/img: full "
        f"{d['full_step_images_per_s']} img/s, "
        f"{'the CNN alone (model=cnn_baseline)' if result.get('baseline') == 'cnn_baseline' else 'backbone alone'} "
        f"{d['backbone_step_images_per_s']} img/s -> full/baseline time {d['full_over_backbone_time']:.3f}x (pair by pair "
        f"{d['pair_ratio_min_max'][0]:.3f}-{d['pair_ratio_min_max'][1]:.3f}x); first step "
        f"{result['first_step_seconds']} s"
    ]
    if d["full_step_peak_memory_mb"] is not None:
        lines.append(
            f"  peak memory: full step {d['full_step_peak_memory_mb']} MiB, backbone "
            f"alone {d['backbone_step_peak_memory_mb']} MiB"
        )
    lines += [
        f"  n_segments={s['n_segments']:>5}: {s['regions_per_image']:>7.1f} regions/img, "
        f"{s['ms_per_image']:.2f} ms/img"
        for s in scaling
    ]
    if "growth_exponent" in result:
        lines.append(
            f"time per image grows as regions^{result['growth_exponent']:.3f} from "
            f"{scaling[0]['regions_per_image']:.0f} to {scaling[-1]['regions_per_image']:.0f} regions"
        )
    return "\n".join(lines)
