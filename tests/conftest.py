"""Shared fixtures: the real Hydra config, a small synthetic dataset, coco_tiny."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from graphvision.utils import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
COCO_TINY = Path(
    os.environ.get("GRAPHVISION_COCO_TINY", ROOT.parent / "shared" / "data" / "coco_tiny")
)


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    """coco_tiny from $GRAPHVISION_COCO_TINY (default ../shared/data/coco_tiny)."""
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"coco_tiny not found at {COCO_TINY} (set GRAPHVISION_COCO_TINY)")
    return COCO_TINY


def compose_cfg(
    config_name: str = "train", overrides: list[str] | None = None, tmp: Path | None = None
):
    """The real config from conf/, with run folders and data under ``tmp``."""
    GlobalHydra.instance().clear()
    extra = []
    if tmp is not None:
        extra = [
            f"paths.output_dir={tmp / 'out'}",
            f"paths.data_dir={tmp / 'data'}",
            f"paths.log_dir={tmp / 'logs'}",
        ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=extra + list(overrides or []))


TINY_SYNTHETIC = [
    "data.num_train=24",
    "data.num_val=12",
    "data.batch_size=8",
    "data.prepare_workers=1",
    "model.dim=32",
    "model.sequence.depth=1",
    "model.gnn.num_layers=1",
]


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m module args`` as a user runs it; fails the test with its output on error."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_metrics(run_dir: Path) -> dict:
    """A run folder's metrics.json, every value finite."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(v is not None and math.isfinite(v) for v in metrics.values()), metrics
    return metrics
