"""Shared fixtures: the real Hydra config, a small synthetic dataset, coco_tiny."""

from __future__ import annotations

import os
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
