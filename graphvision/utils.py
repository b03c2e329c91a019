"""Small helpers shared by the entry points: config location, logging, metric tables."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

#: The project's Hydra configs (``conf/`` beside the package).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def rank_zero_logging() -> None:
    """Under DDP, silences INFO logs on every process but rank zero."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    if rank != 0:
        logging.getLogger("graphvision").setLevel(logging.WARNING)


def scalar_metrics(metrics: dict, prefix: str = "val/") -> dict[str, float]:
    """``{name: float}`` of the logged metrics whose name starts with ``prefix``."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def write_metrics(metrics: dict[str, float], out_dir: str | Path) -> Path:
    """Writes ``metrics.json`` into ``out_dir`` (NaN written as null)."""
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2) + "\n")
    return path


def metrics_table(metrics: dict[str, float]) -> str:
    """A two-column text table of metric names and values."""
    width = max((len(k) for k in metrics), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()]
    return "\n".join(lines)
