"""``graphvision.eval``: breakdowns, modes, the data a checkpoint records."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, is_png, run_module


@pytest.mark.slow
def test_eval_writes_breakdowns(trained, tmp_path):
    run_module(
        "graphvision.eval",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
    )
    table = (tmp_path / "per_category_ap.md").read_text().splitlines()
    assert table[0] == "| category | AP | positives |" and len(table) == 2 + 9
    assert is_png(tmp_path / "relation_confusion.png")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics.keys() >= {
        "val/scene_map",
        "val/rel_acc",
        "val/rel_R@50",
        "val/predcls_R@50",
        "val/sgdet_R@50",
        "val/sgdet_segm_AP",
        "val/rel_zR@50",
    }
    recall = (tmp_path / "predicate_recall.md").read_text().splitlines()
    assert recall[0].startswith("| predicate | ground truth | predcls R@50 | predcls ngR@50 |")
    assert len(recall) == 2 + 6 and "sgdet ngR@50" in recall[0]


@pytest.mark.slow
def test_eval_with_loader_settings_only_keeps_the_checkpoints_data(trained, tmp_path):
    """trainer=gpu brings loader settings (data.num_workers=auto, pin_memory, ...) and no
    data config: eval puts them over the checkpoint's data config (here on the CPU)."""
    run_module(
        "graphvision.eval",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        "trainer=gpu",
        "trainer.accelerator=cpu",
        "trainer.precision=32",
        "mode=predcls",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= metrics["val/scene_map"] <= 1 and "val/predcls_R@50" in metrics


def test_evaluation_data_config_merges_loader_settings_over_the_checkpoints():
    from omegaconf import OmegaConf

    from graphvision.eval import evaluation_data_config
    from graphvision.train import portable_data_config

    saved = {"_target_": "graphvision.data.SyntheticDataModule", "num_train": 8, "batch_size": 4}
    loader = OmegaConf.create({"num_workers": "auto", "pin_memory": True})
    merged = evaluation_data_config(loader, saved)
    assert merged == {**saved, "num_workers": "auto", "pin_memory": True}
    whole = OmegaConf.create({"_target_": "graphvision.data.CocoDataModule", "root": "x"})
    assert evaluation_data_config(whole, saved) is whole  # a whole config replaces the saved
    assert evaluation_data_config(None, saved) == saved
    assert evaluation_data_config(loader, None) is None  # nothing to build: the clear error
    # and a checkpoint does not carry the training machine's loader settings
    stored = portable_data_config(
        OmegaConf.create(
            {**saved, "num_workers": "auto", "pin_memory": True, "persistent_workers": True}
        )
    )
    assert stored == saved


@pytest.mark.slow
def test_eval_in_one_mode(trained, tmp_path):
    """mode=sgdet writes sgdet's metrics and not the other modes' recalls; grouping=class
    evaluates the untrained baseline grouping on the same checkpoint."""
    for grouping in ("learned", "class"):
        run_module(
            "graphvision.eval",
            f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
            "mode=sgdet",
            f"grouping={grouping}",
            f"hydra.run.dir={tmp_path / grouping}",
            cwd=ROOT,
        )
        metrics = json.loads((tmp_path / grouping / "metrics.json").read_text())
        assert {"val/sgdet_R@50", "val/sgdet_segm_AP50", "val/sgdet_obj_recall50"} <= set(metrics)
        assert not any(
            k.startswith(("val/predcls_", "val/rel_R@", "val/rel_ngR@")) for k in metrics
        )
        header = (tmp_path / grouping / "predicate_recall.md").read_text().splitlines()[0]
        assert header == "| predicate | ground truth | sgdet R@50 | sgdet ngR@50 |"
