"""The command line: ``python -m graphvision.bench {regions,prepare,train,loader,predict,tokens,profile,superpixels} --out F.json``
runs one benchmark and writes its result (plus the machine's CPU and torch thread counts) as
JSON; ``python -m graphvision.bench`` also prints the benchmark's summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from graphvision.bench import (
    loader,
    predict,
    prepare,
    profile,
    regions,
    superpixels,
    tokens,
    train,
)

log = logging.getLogger(__name__)

BENCHMARKS = {
    "regions": (regions, "region-graph speed and quality vs PyG and scikit-image"),
    "prepare": (prepare, "pre-processing throughput per worker, stages, disk, COCO extrapolation"),
    "train": (train, "full training step vs backbone alone (CPU/CUDA, fp32/bf16, compile)"),
    "loader": (loader, "the training loader's images/s (workers, pinning) vs the step's"),
    "predict": (
        predict,
        "predict on photos: ms per image for decoding, regions, network, grouping",
    ),
    "tokens": (tokens, "each sequence stage's time and memory from 64 to 4,096 tokens"),
    "profile": (profile, "torch.profiler of training steps: the most expensive operations"),
    "superpixels": (
        superpixels,
        "the superpixel benchmark: pre-processing vs PyG ToSLIC, training vs PyG's GatedGCN",
    ),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m graphvision.bench", description=__doc__.split("\n\n")[0]
    )
    sub = top.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        p.add_argument("--out", required=True, help="the JSON file to write")
        module.add_arguments(p)
    return top


def run(args: argparse.Namespace) -> dict:
    """Runs the benchmark ``args.command`` and writes its result to ``args.out``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    result = BENCHMARKS[args.command][0].run(args)
    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return result


def summary(args: argparse.Namespace, result: dict) -> str:
    """The benchmark's summary of ``result``, as ``python -m graphvision.bench`` prints it."""
    return BENCHMARKS[args.command][0].summary(result)


def main(argv: list[str] | None = None) -> dict:
    """``run`` on the parsed command line ``argv``; returns the result."""
    return run(parser().parse_args(argv))
