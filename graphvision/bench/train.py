"""``python -m graphvision.bench train``: the full training step of the default model (or
one changed by ``--override``) against the backbone alone on the same batch, and how the
step's time grows with the number of regions per image."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from graphvision.bench.common import time_steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps of each kind")
    parser.add_argument("--regions", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="a Hydra override of the model measured, e.g. model/gnn=gatv2 (repeatable)",
    )


def module_and_batch(
    n_segments: int, batch_size: int, data_dir: Path, overrides: list[str] | None = None
):
    """The default config's model (plus ``overrides``, Hydra syntax) and one training batch
    of ``batch_size`` synthetic scenes segmented into about ``n_segments`` regions."""
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
                f"paths.data_dir={data_dir}",
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
    module = instantiate(cfg.model, info=dm.info)
    graphs = [dm.datasets["train"][i] for i in range(batch_size)]
    batch = Batch.from_data_list(graphs, follow_batch=list(module.net.task.follow_batch))
    return module, batch


def full_step_of(module, batch):
    """One training step as a function: forward, the weighted losses, backward and the
    fused AdamW step that ``configure_optimizers`` gives a CPU run."""
    module.train()
    opt = module.make_optimizer(fused=True)

    def full_step() -> None:
        opt.zero_grad(set_to_none=True)
        module.weighted_loss(module.losses(module(batch), batch)).backward()
        opt.step()

    return full_step


def backbone_step_of(module, batch):
    """The backbone alone on the same images: forward, backward, fused AdamW."""
    import torch

    backbone = module.net.features
    opt = torch.optim.AdamW(backbone.parameters(), lr=1e-4, fused=True)

    def backbone_step() -> None:
        opt.zero_grad(set_to_none=True)
        sum(m.mean() for m in backbone.feature_maps(batch.image)).backward()
        opt.step()

    return backbone_step


def run(args) -> dict:
    """Images per second of the full and the backbone step (their ratio, and its range
    pair by pair), then ms per image at every ``--regions`` count and the fitted exponent
    of time against regions."""
    out: dict = {"batch_size": args.batch_size, "overrides": args.override}
    with tempfile.TemporaryDirectory() as tmp:
        module, batch = module_and_batch(100, args.batch_size, Path(tmp) / "d100", args.override)
        out["model"] = {
            "gnn": module.hparams.gnn.get("layer"),
            "sequence": module.hparams.sequence["_target_"].rsplit(".", 1)[-1],
        }
        fulls, bbs = time_steps(
            full_step_of(module, batch), backbone_step_of(module, batch), repeats=args.repeats
        )
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
        }
        scaling = []
        for k in args.regions:
            module, batch = module_and_batch(k, args.batch_size, Path(tmp) / f"d{k}", args.override)
            seconds = statistics.median(
                time_steps(full_step_of(module, batch), repeats=args.repeats)[0]
            )
            scaling.append(
                {
                    "n_segments": k,
                    "regions_per_image": round(batch.num_nodes / batch.num_graphs, 1),
                    "ms_per_image": round(1000 * seconds / batch.num_graphs, 2),
                }
            )
        x = np.log([s["regions_per_image"] for s in scaling])
        y = np.log([s["ms_per_image"] for s in scaling])
        out["scaling"] = scaling
        out["growth_exponent"] = round(float(np.polyfit(x, y, 1)[0]), 3)
    return out


def summary(result: dict) -> str:
    d, scaling = result["default"], result["scaling"]
    lines = [
        f"\ntrain step, {result['model']}, batch {result['batch_size']}, "
        f"{d['regions_per_image']} regions/img: full {d['full_step_images_per_s']} img/s, "
        f"backbone alone {d['backbone_step_images_per_s']} img/s -> full/backbone time "
        f"{d['full_over_backbone_time']:.3f}x (pair by pair {d['pair_ratio_min_max'][0]:.3f}-"
        f"{d['pair_ratio_min_max'][1]:.3f}x)"
    ]
    lines += [
        f"  n_segments={s['n_segments']:>5}: {s['regions_per_image']:>7.1f} regions/img, "
        f"{s['ms_per_image']:.2f} ms/img"
        for s in scaling
    ]
    lines.append(
        f"time per image grows as regions^{result['growth_exponent']:.3f} from "
        f"{scaling[0]['regions_per_image']:.0f} to {scaling[-1]['regions_per_image']:.0f} regions"
    )
    return "\n".join(lines)
