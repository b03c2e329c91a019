"""``python -m graphvision.bench profile``: torch.profiler over training steps on the CPU, as
a one-process run takes them: the loader's work (the training split's items, augmented, then
collated into one PyG batch, as ``num_workers=0`` does it) and the step (forward and losses,
backward, AdamW). Prints the most expensive operations by self CPU time and the fraction
of the profiled time each takes; the loader's Python and NumPy work shows as the self time
of its two labelled ranges, ``dataset items`` and ``collate``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from graphvision.bench.loader import add_override_argument, compose_training

#: the labelled ranges, in the order a step runs them
RANGES = ("dataset items", "collate", "forward + losses", "backward", "optimizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=128, help="training images")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after one more)")
    parser.add_argument("--top", type=int, default=5, help="operations listed")
    add_override_argument(parser)


def run(args) -> dict:
    import torch
    from hydra.utils import instantiate
    from torch.profiler import ProfilerActivity, profile, record_function
    from torch_geometric.data import Batch

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_training(Path(tmp), args, num_workers=0)
        dm = instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        module = instantiate(cfg.model, info=dm.info)
        module.train()
        opt = module.make_optimizer(fused=True)
        dataset, follow = dm.datasets["train"], list(module.net.task.follow_batch)

        def step(k: int) -> None:
            first = (k * args.batch_size) % len(dataset) + len(dataset)  # epoch 1: augmented
            with record_function("dataset items"):
                items = [dataset[first + i] for i in range(args.batch_size)]
            with record_function("collate"):
                batch = Batch.from_data_list(items, follow_batch=follow)
            opt.zero_grad(set_to_none=True)
            with record_function("forward + losses"):
                loss = module.weighted_loss(module.losses(module(batch), batch))
            with record_function("backward"):
                loss.backward()
            with record_function("optimizer"):
                opt.step()

        step(0)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for k in range(1, args.steps + 1):
                step(k)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ranges = {e.key: e for e in events if e.key in RANGES}
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    per_step = total / args.steps / 1000
    return {
        "batch_size": args.batch_size,
        "steps": args.steps,
        "overrides": args.override,
        "torch_threads": torch.get_num_threads(),
        "ms_per_step": round(per_step, 1),
        "top": [
            {
                "operation": e.key,
                "self_ms_per_step": round(e.self_cpu_time_total / args.steps / 1000, 2),
                "fraction": round(e.self_cpu_time_total / total, 3),
                "calls_per_step": e.count // args.steps,
            }
            for e in top
        ],
        # each range with what runs inside it (its total, not its self, time)
        "ranges_fraction": {
            name: round(ranges[name].cpu_time_total / total, 3) for name in RANGES if name in ranges
        },
    }


def summary(result: dict) -> str:
    lines = [
        f"\nprofile of {result['steps']} training steps (batch {result['batch_size']}, "
        f"{result['torch_threads']} threads): {result['ms_per_step']} ms per step",
        "  | operation | self ms per step | fraction of the step | calls per step |",
        "  | --- | --- | --- | --- |",
    ]
    lines += [
        f"  | {t['operation']} | {t['self_ms_per_step']} | {t['fraction']:.1%} | "
        f"{t['calls_per_step']} |"
        for t in result["top"]
    ]
    lines.append(
        "  ranges: " + ", ".join(f"{k} {v:.1%}" for k, v in result["ranges_fraction"].items())
    )
    return "\n".join(lines)
