"""``python -m graphvision.bench predict``: milliseconds per image of ``predict`` on a folder
of photos (coco_tiny's validation photos by default) with the model loaded once
(:class:`~graphvision.predictor.Predictor`), split into decoding, regions (resize, SLIC,
region graph), the network (backbone, GNN, sequence stage and heads), grouping (finding the
objects in the region graph, with the object and relation heads on them) and the typed
prediction with its JSON record; drawing the PNG is left out.

The parts are timed from outside: :class:`StageTimer` wraps the predictor's stage methods
(and the task's ``detect``) on the instance, so the production path has no timing code."""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

log = logging.getLogger(__name__)

PARTS = ("decode", "regions", "network", "grouping", "record")


class StageTimer:
    """Seconds spent in chosen methods of chosen objects, by name: ``wrap(obj, "method",
    "name")`` replaces the bound method on that instance by a timed one (synchronising CUDA
    first when ``device`` is a GPU); :meth:`take` returns and clears the totals."""

    def __init__(self, device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    def _now(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def wrap(self, obj, method: str, name: str) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            start = self._now()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + self._now() - start

        setattr(obj, method, timed)

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by graphvision.train")
    parser.add_argument(
        "--images", help="a folder of photos (default: $GRAPHVISION_COCO_TINY/val2017)"
    )
    parser.add_argument("--limit", type=int, default=40, help="photos to time (default 40)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )


def run(args) -> dict:
    """Per photo, after one warm-up photo: the seconds of each part of
    :meth:`~graphvision.predictor.Predictor.predict` (no annotations: the objects are found);
    medians and means in ms, and grouping's share of the network's time."""
    import torch

    from graphvision.bench.common import coco_root
    from graphvision.predictor import Predictor, list_images

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.images) if args.images else coco_root(None) / "val2017"
    images = list_images(folder)[: args.limit + 1]
    predictor = Predictor.from_checkpoint(args.ckpt)
    timer = StageTimer(predictor.device)
    for obj, method, name in (
        (predictor, "read", "decode"),
        (predictor, "region_graph", "regions"),
        (predictor, "infer", "network"),
        (predictor.task, "detect", "grouping"),
        (predictor.task, "prediction", "record"),
    ):
        timer.wrap(obj, method, name)
    log.info("predict: %d photos from %s, model %s", len(images) - 1, folder, args.ckpt)
    per_image: list[dict] = []
    found = []
    for i, path in enumerate(images):
        t0 = time.perf_counter()
        prediction = predictor.predict(path)
        record = prediction.to_json()
        total = time.perf_counter() - t0
        timings = timer.take()
        # the network's time holds the grouping's (detect runs inside the forward)
        timings["network"] -= timings.get("grouping", 0.0)
        timings["record"] += total - sum(timings.values())  # to_json and the glue
        timings["total"] = total
        if i:  # the first photo warms up
            per_image.append(timings)
            found.append(len(record.get("objects", [])))
    parts = {}
    for name in (*PARTS, "total"):
        values = [1000 * t.get(name, 0.0) for t in per_image]
        parts[name] = {
            "median_ms": round(statistics.median(values), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
    share = parts["grouping"]["mean_ms"] / parts["network"]["mean_ms"]
    return {
        "images": len(per_image),
        "folder": str(folder),
        "working_size": list(predictor.regions.size),
        "n_segments": predictor.regions.n_segments,
        "objects_per_image": round(statistics.fmean(found), 2) if found else 0.0,
        "ms_per_image": parts,
        "grouping_over_network": round(share, 4),
    }


def summary(result: dict) -> str:
    parts = result["ms_per_image"]
    lines = [
        f"predict on {result['images']} photos ({result['folder']}), "
        f"{result['objects_per_image']} objects found per photo:",
        "| part | median ms | mean ms |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {k} | {v['median_ms']:.2f} | {v['mean_ms']:.2f} |" for k, v in parts.items()]
    lines.append(f"grouping / network (means): {result['grouping_over_network']:.3f}")
    return "\n".join(lines)
