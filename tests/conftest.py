"""Shared fixtures and helpers: the real Hydra config, modules built from it, small
synthetic datasets, coco_tiny, subprocess runs of the entry points."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from graphvision.utils import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
COCO_TINY = Path(
    os.environ.get("GRAPHVISION_COCO_TINY", ROOT.parent / "shared" / "data" / "coco_tiny")
)

#: a vocabulary of three categories and two predicates, for models built without data
SCENE_INFO = {"categories": ["a", "b", "c"], "predicates": ["l", "r"], "classes": []}


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    """coco_tiny from $GRAPHVISION_COCO_TINY (default ../shared/data/coco_tiny)."""
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"coco_tiny not found at {COCO_TINY} (set GRAPHVISION_COCO_TINY)")
    return COCO_TINY


CIFAR10 = Path(os.environ.get("GRAPHVISION_CIFAR10", ROOT.parent / "shared" / "data" / "cifar10"))


@pytest.fixture(scope="session")
def cifar10() -> str:
    """CIFAR-10 as an image folder from $GRAPHVISION_CIFAR10 (default ../shared/data/cifar10)."""
    if not (CIFAR10 / "train" / "airplane").is_dir():
        pytest.skip(f"CIFAR-10 image folder not found at {CIFAR10} (set GRAPHVISION_CIFAR10)")
    return str(CIFAR10)


def compose_cifar10_handful(experiment: str, cifar10: str, tmp: Path):
    """``experiment`` on two CIFAR-10 photos of each class (``data.per_class``: the first of
    each class folder), one for validation, a ``fast_dev_run``."""
    return compose_cfg(
        overrides=[
            f"experiment={experiment}",
            f"data.root={cifar10}",
            "data.per_class.train=2",
            "data.per_class.val=1",
            "data.batch_size=8",
            "data.prepare_workers=1",
            "debug=fdr",
        ],
        tmp=tmp,
    )


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


def build_module(info: dict, overrides: list[str] | None = None):
    """A ``GraphVisionModule`` from the real model config (plus ``overrides``) for ``info``."""
    import hydra

    cfg = compose_cfg(overrides=overrides)
    return hydra.utils.instantiate(cfg.model, info=info)


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


#: a 20x20 square object of category 1 in image 1 (COCO annotation)
SQUARE = {
    "id": 1,
    "image_id": 1,
    "category_id": 1,
    "bbox": [2, 2, 20, 20],
    "iscrowd": 0,
    "segmentation": [[2, 2, 22, 2, 22, 22, 2, 22]],
}


def make_tiny_coco(root: Path, images: dict, annotations: list[dict] | None = None) -> Path:
    """A COCO-layout root whose train and val splits both hold ``images`` (name -> bytes or
    array), each listed as 32x32; ``annotations`` (default: image 1 has one square object,
    the others none) over the categories 1 ``thing`` and 2 ``other thing``."""
    import json

    from PIL import Image

    (root / "annotations").mkdir(parents=True)
    entries = [
        {"id": i, "file_name": n, "width": 32, "height": 32} for i, n in enumerate(images, 1)
    ]
    if annotations is None:
        annotations = [SQUARE]
    cats = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other thing"}]
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        for name, content in images.items():
            if isinstance(content, bytes):
                (root / split / name).write_bytes(content)
            else:
                Image.fromarray(content).save(root / split / name)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": entries, "annotations": annotations, "categories": cats})
        )
    return root


def make_image_folder(root: Path, per_class: int = 6) -> Path:
    """``root/.../{train,val}/<category>/`` of one-object synthetic scenes (64x64)."""
    from graphvision.data import SyntheticFolderDataModule

    dm = SyntheticFolderDataModule(
        data_dir=str(root),
        per_class_train=per_class,
        per_class_val=max(per_class // 2, 1),
        image_size=64,
    )
    dm.generate()
    return dm.root


@pytest.fixture
def degenerate_batch(tmp_path):
    """A batch of an 8x8 image with two objects and a one-region image with none, and the
    vocabulary of its two categories and six predicates."""
    from PIL import Image
    from torch_geometric.data import Batch

    from graphvision.data.objects import ObjectConfig
    from graphvision.data.pipeline import ImageJob, build_entry, to_graph
    from graphvision.regions import RegionConfig
    from graphvision.tasks import SceneGraphTask

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tmp_path / "flat.png")
    ann = {
        "id": 1,
        "category_id": 1,
        "bbox": [1, 1, 5, 5],
        "iscrowd": 0,
        "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]],
    }
    jobs = [
        ImageJob(str(tmp_path / "tiny.png"), 1, (8, 8), (ann, {**ann, "id": 2}), (1, 2)),
        ImageJob(str(tmp_path / "flat.png"), 2, (50, 40), (), (1, 2)),
    ]
    graphs = [
        to_graph(build_entry(jobs[0], RegionConfig(size=(32, 32), n_segments=20), ObjectConfig())),
        to_graph(build_entry(jobs[1], RegionConfig(size=(32, 32), n_segments=1), ObjectConfig())),
    ]
    assert graphs[1].num_nodes == 1 and graphs[1].num_objects == 0
    info = {"categories": ["a", "b"], "predicates": ["l", "r", "a", "b", "i", "s"], "classes": []}
    batch = Batch.from_data_list(graphs, follow_batch=list(SceneGraphTask.follow_batch))
    return batch, info


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    """Whether ``path`` is a PNG file with a picture in it (over 1 kB)."""
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny model trained for one epoch through the real entry point."""
    tmp = tmp_path_factory.mktemp("trained")
    run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=1",
        f"paths.data_dir={tmp / 'data'}",
        f"hydra.run.dir={tmp / 'run'}",
        cwd=tmp,
    )
    return tmp
