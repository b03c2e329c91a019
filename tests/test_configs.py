"""Every option of every config group composes and instantiates; fast_dev_run per experiment."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from graphvision.train import instantiate_all, train
from graphvision.utils import CONFIG_DIR
from tests.conftest import TINY_SYNTHETIC, compose_cfg

INFO = {"task": "relations", "categories": ["a", "b", "c"], "relations": ["l", "r"], "classes": []}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_its_options():
    assert options("model/gnn") == ["gated_gcn", "gatv2", "gcn", "gine", "gps"]
    assert options("model/sequence") == ["deepseek_v3", "none", "pretrained_lm", "transformer"]
    assert options("trainer") == ["cpu", "ddp", "default", "gpu"]
    assert options("experiment") == [
        "coco_relations",
        "folder_classification",
        "seed_folder",
        "seed_relations",
        "synthetic_relations",
        "synthetic_zero_shot",
    ]
    assert options("logger") == ["csv", "tensorboard"]


@pytest.mark.parametrize("option", options("data"))
def test_data_options(option, tmp_path):
    cfg = compose_cfg(overrides=[f"data={option}"], tmp=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.regions.size == tuple(cfg.data.regions.size)


@pytest.mark.parametrize("group", ["model/backbone", "model/gnn", "model/sequence"])
def test_model_options(group, tmp_path):
    for option in options(group):
        cfg = compose_cfg(overrides=[f"{group}={option}"], tmp=tmp_path)
        model = hydra.utils.instantiate(cfg.model, info=INFO)
        assert type(model.net.features).__name__ == "RegionFeatures"
        stage = {
            "model/backbone": model.net.features,
            "model/gnn": model.net.gnn,
            "model/sequence": model.net.sequence,
        }[group]
        expected = cfg.model[group.split("/")[1]]["_target_"].rsplit(".", 1)[1]
        assert type(stage).__name__ == expected
        if group == "model/backbone":
            assert stage.name == option
        if group == "model/gnn":
            assert stage.layer == option


@pytest.mark.parametrize("option", ["cpu", "gpu", "ddp", "default"])
def test_trainer_options(option, tmp_path):
    overrides = [f"trainer={option}"]
    if option == "gpu" and not torch.cuda.is_available():
        overrides.append("trainer.accelerator=cpu")  # composed as for a GPU, built on this CPU
    cfg = compose_cfg(overrides=overrides, tmp=tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer)
    if option == "gpu":
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.devices == 1
    if option == "ddp":
        assert type(trainer.strategy).__name__ == "DDPStrategy"
        assert trainer.num_devices == 2


@pytest.mark.parametrize("group", ["callbacks", "logger"])
def test_callback_and_logger_options(group, tmp_path):
    for option in options(group):
        cfg = compose_cfg(overrides=[f"{group}={option}"], tmp=tmp_path)
        objects = instantiate_all(cfg, group)
        assert len(objects) == len([k for k, v in (cfg.get(group) or {}).items() if v])


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_options_compose(option, tmp_path):
    cfg = compose_cfg(overrides=[f"experiment={option}"], tmp=tmp_path)
    expected = {
        "synthetic_relations": "SyntheticDataModule",
        "coco_relations": "CocoDataModule",
        "folder_classification": "ImageFolderDataModule",
        "synthetic_zero_shot": "SyntheticDataModule",
        "seed_relations": "SyntheticDataModule",
        "seed_folder": "SyntheticFolderDataModule",
    }[option]
    assert cfg.data._target_.endswith(expected)
    assert cfg.monitor.metric.startswith("val/")


def test_paths_hydra_debug_and_eval_compose(tmp_path):
    cfg = compose_cfg(overrides=["debug=fdr"], tmp=tmp_path)
    assert cfg.trainer.fast_dev_run is True
    assert cfg.paths.data_dir == str(tmp_path / "data")
    ev = compose_cfg("eval", overrides=["ckpt_path=x.ckpt"], tmp=tmp_path)
    assert ev.ckpt_path == "x.ckpt" and ev.get("data") is None


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


def _fast_dev_run(tmp_path, overrides):
    cfg = compose_cfg(overrides=["debug=fdr", "data.prepare_workers=1", *overrides], tmp=tmp_path)
    metrics = train(cfg)
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    return metrics


def test_fast_dev_run_synthetic_relations(tmp_path):
    m = _fast_dev_run(tmp_path, ["experiment=synthetic_relations", *TINY_SYNTHETIC])
    assert {
        "val/scene_map",
        "val/object_acc",
        "val/rel_acc",
        "val/rel_R@50",
        "val/rel_mR@50",
    } <= set(m)


def test_fast_dev_run_coco_relations(tmp_path, coco_tiny):
    m = _fast_dev_run(
        tmp_path,
        [
            "experiment=coco_relations",
            f"data.root={coco_tiny}",
            "data.limit_images=8",
            "data.batch_size=4",
            "model.dim=32",
        ],
    )
    assert {"val/scene_map", "val/object_acc", "val/rel_acc"} <= set(m)


def test_fast_dev_run_folder_classification(tmp_path):
    root = make_image_folder(tmp_path / "folder", per_class=2)
    m = _fast_dev_run(
        tmp_path,
        [
            "experiment=folder_classification",
            f"data.root={root}",
            "model.dim=32",
            "data.batch_size=4",
        ],
    )
    assert "val/acc" in m
