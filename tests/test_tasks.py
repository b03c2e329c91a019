"""The task interface the entry points use: evaluation modes, their metrics and options,
asked of the task (``eval`` and ``predict`` name none)."""

from __future__ import annotations

import re

import pytest
import torch

from tests.conftest import SCENE_INFO, build_module


@pytest.fixture(scope="module")
def scene_task():
    return build_module(SCENE_INFO, ["model.dim=16", "model.gnn.num_layers=1"]).net.task


@pytest.fixture(scope="module")
def class_task():
    info = {"categories": [], "predicates": [], "classes": ["cat", "dog"]}
    overrides = ["model/task=classification", "model.dim=16", "model.gnn.num_layers=1"]
    return build_module(info, overrides).net.task


def test_configure_eval_checks_the_modes_asked_for(scene_task, class_task):
    assert scene_task.configure_eval() == ("predcls", "sgcls", "sgdet")
    assert scene_task.configure_eval("sgdet") == ("sgdet",)
    assert scene_task.configure_eval(["predcls", "sgcls"]) == ("predcls", "sgcls")
    with pytest.raises(ValueError, match=re.escape("mode=['sgfoo']: choose among")):
        scene_task.configure_eval(["sgfoo"])
    assert class_task.configure_eval() == () and class_task.configure_eval("sgdet") == ()
    with pytest.raises(ValueError, match=re.escape("reads no eval option ['grouping']")):
        class_task.configure_eval(grouping="class")


def test_configure_eval_applies_the_tasks_options(scene_task):
    trained = scene_task.grouping
    try:
        assert scene_task.configure_eval(None, grouping=None) and scene_task.grouping == trained
        scene_task.configure_eval(None, grouping="class")
        assert scene_task.grouping == "class"
        with pytest.raises(ValueError, match="grouping=nearest: choose among"):
            scene_task.configure_eval(None, grouping="nearest")
    finally:
        scene_task.grouping = trained


def test_each_metric_belongs_to_its_mode(scene_task, class_task):
    owner = {
        name: scene_task.metric_mode(f"val/{name}")
        for name in (
            "scene_map",
            "object_acc",
            "rel_acc",
            "rel_R@50",
            "rel_mR@20",
            "rel_zR@50",
            "predcls_R@50",
            "predcls_ngR@20",
            "sgdet_R@50",
            "sgdet_segm_AP50",
            "loss",
        )
    }
    assert owner == {
        "scene_map": None,
        "object_acc": None,
        "rel_acc": None,
        "rel_R@50": "sgcls",
        "rel_mR@20": "sgcls",
        "rel_zR@50": "sgcls",
        "predcls_R@50": "predcls",
        "predcls_ngR@20": "predcls",
        "sgdet_R@50": "sgdet",
        "sgdet_segm_AP50": "sgdet",
        "loss": None,
    }
    assert class_task.metric_mode("val/acc") is None


def test_detection_and_boxes_are_the_tasks_to_say(scene_task, class_task):
    assert scene_task.detects(("sgdet",)) and not scene_task.detects(("predcls", "sgcls"))
    assert not class_task.detects(("sgdet",))
    assert scene_task.takes_boxes and not class_task.takes_boxes
    no_objects = type("B", (), {"obj_label": torch.zeros(0, dtype=torch.long)})()
    some = type("B", (), {"obj_label": torch.zeros(2, dtype=torch.long)})()
    assert scene_task.wants_detection(no_objects) and not scene_task.wants_detection(some)
    assert not class_task.wants_detection(no_objects)
    assert scene_task.needs_training_split()  # nothing recorded before training starts
    scene_task.train_triplets[0, 0, 1] = True
    assert not scene_task.needs_training_split()
    scene_task.train_triplets.zero_()
    assert not class_task.needs_training_split()
