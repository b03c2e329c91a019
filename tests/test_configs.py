"""Every option of every config group composes and instantiates; fast_dev_run per experiment."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException

from graphvision.train import instantiate_all, train
from graphvision.utils import CONFIG_DIR
from tests.conftest import SCENE_INFO, TINY_SYNTHETIC, compose_cfg, make_image_folder

CLASS_INFO = {"categories": [], "predicates": [], "classes": ["cat", "dog"]}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_its_options():
    assert options("model/gnn") == ["gated_gcn", "gatv2", "gcn", "gine", "gps", "none"]
    assert options("model/sequence") == ["deepseek_v3", "none", "pretrained_lm", "transformer"]
    assert options("model/task") == ["classification", "scene_graph"]
    assert options("trainer") == ["cpu", "ddp", "default", "gpu"]
    assert options("experiment") == [
        "cifar10",
        "cifar10_superpixels",
        "coco_relations",
        "folder_classification",
        "seed_folder",
        "seed_relations",
        "synthetic_relations",
        "synthetic_zero_shot",
    ]
    assert options("logger") == ["csv", "tensorboard"]
    # shared by every dataset: one region graph, one object filter, one loader block
    assert options("data/regions") == ["slic"]
    assert options("data/objects") == ["sg2im"]
    assert options("data/loader") == ["default"]


@pytest.mark.parametrize("option", options("data"))
def test_every_dataset_shares_the_region_and_loader_groups(option):
    """Each data config takes its regions and loader settings from the shared groups (and
    overrides only what differs), and keeps the loader keys at ``data.*``."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(Path(CONFIG_DIR) / "data" / f"{option}.yaml")
    defaults = [d if isinstance(d, str) else next(iter(d)) for d in raw.defaults]
    assert "regions" in str(raw.defaults) and "loader@_here_" in str(raw.defaults), defaults
    cfg = compose_cfg(overrides=[f"data={option}"])
    assert {"batch_size", "num_workers", "pin_memory", "strict"} <= set(cfg.data)
    assert set(cfg.data.regions) == set(OmegaConf.load(Path(CONFIG_DIR) / "data/regions/slic.yaml"))


@pytest.mark.parametrize("option", options("data"))
def test_data_options(option, tmp_path):
    cfg = compose_cfg(overrides=[f"data={option}"], tmp=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.regions.size == tuple(cfg.data.regions.size)


@pytest.mark.parametrize("group", ["model/backbone", "model/gnn", "model/sequence"])
def test_model_options(group, tmp_path):
    for option in options(group):
        cfg = compose_cfg(overrides=[f"{group}={option}"], tmp=tmp_path)
        model = hydra.utils.instantiate(cfg.model, info=SCENE_INFO)
        no_cnn = group == "model/backbone" and option == "none"
        assert type(model.net.features).__name__ == ("NoBackbone" if no_cnn else "RegionFeatures")
        stage = {
            "model/backbone": model.net.features,
            "model/gnn": model.net.gnn,
            "model/sequence": model.net.sequence,
        }[group]
        expected = cfg.model[group.split("/")[1]]["_target_"].rsplit(".", 1)[1]
        assert type(stage).__name__ == expected
        if group == "model/backbone" and not no_cnn:
            assert stage.name == option
        if group == "model/gnn":  # each option its own class, none a layer name
            assert not hasattr(stage, "layer")


@pytest.mark.parametrize(
    "option, accelerator, devices, strategy, precision",
    [
        ("cpu", "CPUAccelerator", 1, "SingleDeviceStrategy", "32-true"),
        ("default", "CPUAccelerator", 1, "SingleDeviceStrategy", "32-true"),
        ("gpu", "CUDAAccelerator", 1, "SingleDeviceStrategy", "bf16-mixed"),
        ("ddp", None, 2, "DDPStrategy", "32-true"),
    ],
)
def test_trainer_options(option, accelerator, devices, strategy, precision, tmp_path):
    overrides = [f"trainer={option}"]
    if option == "gpu" and not torch.cuda.is_available():
        overrides.append("trainer.accelerator=cpu")  # composed as for a GPU, built on this CPU
        accelerator, precision = "CPUAccelerator", "bf16-mixed"
    cfg = compose_cfg(overrides=overrides, tmp=tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer)
    assert cfg.trainer.precision if option == "gpu" else "precision" not in cfg.trainer
    assert trainer.precision == precision and trainer.num_devices == devices
    assert type(trainer.strategy).__name__ == strategy
    if accelerator:
        assert type(trainer.accelerator).__name__ == accelerator
    assert trainer.gradient_clip_val == 1.0 and trainer.max_epochs == 16


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
        "cifar10": "ImageFolderDataModule",
        "cifar10_superpixels": "ImageFolderDataModule",
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


@pytest.mark.parametrize(
    "option, info, outputs",
    [
        (
            "scene_graph",
            SCENE_INFO,
            {"scene_logits", "region_logits", "object_logits", "relation_logits", "edge_logits"},
        ),
        ("classification", CLASS_INFO, {"class_logits"}),
    ],
)
def test_task_options(option, info, outputs, degenerate_batch, tmp_path):
    """Each task builds from its config and owns its heads, losses (with their weights from
    the config) and metrics; the other kind of data is refused with the remedy named."""
    cfg = compose_cfg(overrides=[f"model/task={option}", "model.dim=32"], tmp=tmp_path)
    model = hydra.utils.instantiate(cfg.model, info=info)
    task = model.net.task
    assert type(task).__name__ == cfg.model.task._target_.rsplit(".", 1)[1]
    assert task.loss_weights == dict(cfg.model.task.loss_weights)
    assert (
        set(model.metrics) == {"val", "test"} and model.metrics["val"] is not model.metrics["test"]
    )
    other = CLASS_INFO if info is SCENE_INFO else SCENE_INFO
    with pytest.raises(InstantiationException, match=r"needs data with .*model/task="):
        hydra.utils.instantiate(cfg.model, info=other)
    if option == "scene_graph":
        batch, small = degenerate_batch
        model = hydra.utils.instantiate(cfg.model, info=small)
        assert set(model(batch)) == outputs


def _target_defaults(cls) -> dict:
    """The keyword defaults of a class's signature and of the ``__init__`` s it passes
    ``**kwargs`` to."""
    import inspect

    found = {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if p.default is not inspect.Parameter.empty:
                found.setdefault(name, p.default)
    return found


def test_one_home_for_each_default():
    """A value set in conf/ is not set differently in code: the module's and the tasks'
    hyper-parameters have no code default at all; a stage class's code defaults equal the
    config that uses it (for a class several options share, the default option's)."""
    import yaml
    from hydra.utils import get_class

    from graphvision.module import GraphVisionModule
    from graphvision.tasks import ClassificationTask, SceneGraphTask

    model_cfg = yaml.safe_load((Path(CONFIG_DIR) / "model" / "default.yaml").read_text())
    for cls, cfg_file in [
        (GraphVisionModule, "model/default.yaml"),
        (SceneGraphTask, "model/task/scene_graph.yaml"),
        (ClassificationTask, "model/task/classification.yaml"),
    ]:
        keys = set(yaml.safe_load((Path(CONFIG_DIR) / cfg_file).read_text())) - {"_target_"}
        assert not keys & set(_target_defaults(cls)), (cls, keys & set(_target_defaults(cls)))
    default_options = {
        f"model/{group}/{option}.yaml"
        for entry in model_cfg["defaults"]
        if isinstance(entry, dict)
        for group, option in entry.items()
    }
    by_class: dict = {}
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        if str(cfg.get("_target_", "")).startswith("graphvision."):
            by_class.setdefault(cfg["_target_"], []).append(path)
    checked = 0
    for target, paths in by_class.items():
        if len(paths) > 1:  # options of one class: the default option carries its defaults
            paths = [p for p in paths if str(p.relative_to(CONFIG_DIR)) in default_options]
        defaults = _target_defaults(get_class(target))
        for path in paths:
            for key, value in yaml.safe_load(path.read_text()).items():
                interpolated = isinstance(value, str) and "${" in value  # its home is elsewhere
                if key in defaults and not isinstance(value, (dict, list)) and not interpolated:
                    assert defaults[key] == value, (
                        f"{path}: {key}={value}, code says {defaults[key]}"
                    )
                    checked += 1
    assert checked >= 25


def test_hparams_search_optimises_the_experiments_metric(tmp_path):
    for experiment, metric in [
        ("synthetic_relations", "val/scene_map"),
        ("folder_classification", "val/acc"),
        ("synthetic_zero_shot", "val/scene_map_unseen"),
    ]:
        cfg = compose_cfg(
            overrides=[f"experiment={experiment}", "hparams_search=optuna"], tmp=tmp_path
        )
        assert cfg.optimized_metric == metric


def test_tags_and_run_config_reach_the_loggers(tmp_path):
    import yaml
    from lightning.pytorch.loggers import CSVLogger

    from graphvision.train import log_run_config

    cfg = compose_cfg(overrides=["experiment=coco_relations", "seed=7"], tmp=tmp_path)
    logger = CSVLogger(str(tmp_path), name="csv", version="")
    log_run_config(cfg, [logger])
    logger.save()
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["tags"] == ["coco", "relations"] and hparams["seed"] == 7
    assert hparams["data"]["_target_"] == "graphvision.data.CocoDataModule"
    assert hparams["trainer"]["max_epochs"] == 20


NEW_TASK = '''
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAveragePrecision

from graphvision.nn.heads import SceneHead
from graphvision.tasks import Task


class SceneLabelsTask(Task):
    """Only which categories the image holds."""

    loss_names = ("scene",)
    progress_bar = ("scene_map",)

    def __init__(self, info, dim, dropout, loss_weights):
        super().__init__(info, dim, dropout, loss_weights)
        self.categories = self.require("categories", "use a scene-graph dataset")
        self.head = SceneHead(dim, len(self.categories))

    def forward(self, cls, tokens, batch, detect=False):
        return {"scene_logits": self.head(cls)}

    def attribution_logits(self, out):
        return out["scene_logits"]

    def losses(self, out, batch):
        return {"scene": F.binary_cross_entropy_with_logits(out["scene_logits"], batch.y)}

    def make_metrics(self):
        return nn.ModuleDict({"scene_map": MultilabelAveragePrecision(len(self.categories))})

    def update_metrics(self, metrics, out, batch):
        metrics["scene_map"](out["scene_logits"], batch.y.long())
        return {"scene_map": metrics["scene_map"]}
'''


def test_a_new_task_is_a_module_and_a_config(tmp_path, monkeypatch):
    """A task written outside graphvision (a module and its config) trains, validates and
    logs through the unchanged DataModules, module and entry point."""
    from omegaconf import OmegaConf, open_dict

    (tmp_path / "my_tasks.py").write_text(NEW_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg(
        overrides=["debug=fdr", "data.prepare_workers=1", *TINY_SYNTHETIC], tmp=tmp_path
    )
    with open_dict(cfg):
        cfg.model.task = OmegaConf.create(
            {"_target_": "my_tasks.SceneLabelsTask", "loss_weights": {"scene": 1.0}}
        )
    metrics = train(cfg)
    assert set(metrics) == {"val/loss", "val/loss_scene", "val/scene_map"}
    assert metrics["val/loss"] == metrics["val/loss_scene"]  # its weight is 1


def test_trainer_gpu_feeds_the_device_and_cpu_defaults_stay(tmp_path):
    """trainer=gpu: loader workers from the cores (``auto``), page-locked batches,
    persistent workers, bf16; every data config without it: no workers, no pinning."""
    from graphvision.data.datamodule import auto_workers, available_cores

    for data in options("data"):
        cpu = compose_cfg(overrides=[f"data={data}"], tmp=tmp_path)
        assert (cpu.data.num_workers, cpu.data.pin_memory) == (0, False), data
        assert cpu.trainer.accelerator == "cpu" and "precision" not in cpu.trainer
        gpu = compose_cfg(overrides=[f"data={data}", "trainer=gpu"], tmp=tmp_path)
        assert gpu.data.num_workers == "auto" and gpu.data.pin_memory is True
        assert gpu.data.persistent_workers is True and gpu.trainer.precision == "bf16-mixed"
        assert gpu.data._target_ == cpu.data._target_  # the rest of the data config kept
    dm = hydra.utils.instantiate(
        compose_cfg(
            overrides=["trainer=gpu", "data.num_train=4", "data.num_val=2"], tmp=tmp_path
        ).data
    )
    assert dm.num_workers == auto_workers(available_cores()) >= 1
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.pin_memory and loader.persistent_workers
    assert loader.num_workers == dm.num_workers


@pytest.mark.parametrize(
    "cores, processes, workers",
    [(2, 1, 1), (1, 1, 1), (16, 1, 15), (64, 1, 16), (64, 8, 7), (128, 8, 15), (8, 8, 1)],
)
def test_auto_workers(cores, processes, workers):
    from graphvision.data.datamodule import auto_workers

    assert auto_workers(cores, processes) == workers


def test_num_workers_must_be_a_count_or_auto():
    from graphvision.data import SyntheticDataModule

    with pytest.raises(
        ValueError, match=r'data.num_workers=-1: must be an integer >= 0, or "auto"'
    ):
        SyntheticDataModule(num_workers=-1)
    with pytest.raises(ValueError, match=r"data.num_workers='many'"):
        SyntheticDataModule(num_workers="many")
