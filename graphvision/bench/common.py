"""What the benchmarks share: where coco_tiny is, and timing helpers."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

#: the environment variable naming coco_tiny (or any COCO-layout root)
COCO_ENV = "GRAPHVISION_COCO_TINY"


class BenchmarkInputError(SystemExit):
    """A benchmark's input is missing: the message says what to pass."""


def coco_root(given: str | None) -> Path:
    """A COCO-layout root: ``given`` (``--root``), else ``$GRAPHVISION_COCO_TINY``; a clear
    error naming both when neither points at one."""
    source = given or os.environ.get(COCO_ENV)
    if not source:
        raise BenchmarkInputError(
            f"no COCO-layout root given: pass --root ROOT (--images/--annotations for regions) "
            f"or set {COCO_ENV}=ROOT (ROOT/annotations/instances_val2017.json, ROOT/val2017/)"
        )
    root = Path(source)
    if not (root / "annotations").is_dir():
        raise BenchmarkInputError(
            f"{root} has no annotations/ folder: it is not a COCO-layout root (pass --root or "
            f"set {COCO_ENV})"
        )
    return root


def composed_regions(*overrides: str) -> dict:
    """The ``data.regions`` block of the train config composed with ``overrides`` (e.g.
    ``data=coco``): what those commands would pre-process with."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return OmegaConf.to_container(cfg.data.regions, resolve=True)


def coco_region_settings() -> dict:
    """``data=coco``'s ``regions`` block: the settings the benchmarks of photos measure unless
    told otherwise."""
    return composed_regions("data=coco")


def require_device(device: str) -> None:
    """A clear error, before any work, when ``--device cuda`` is asked for and absent."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BenchmarkInputError(
            "--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
            "run on a machine with a GPU and a CUDA build of torch, or use --device cpu"
        )


def median_ms(seconds: list[float]) -> float:
    return 1000.0 * statistics.median(seconds)


def time_steps(*steps, repeats: int) -> list[list[float]]:
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
