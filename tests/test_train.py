"""End to end through the real entry points (subprocesses, as a user runs them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_SYNTHETIC, read_metrics, run_module
from tests.test_configs import make_image_folder

RELATION_METRICS = {
    "val/scene_map",
    "val/object_acc",
    "val/rel_acc",
    "val/rel_R@50",
    "val/rel_mR@50",
    "val/loss",
}


@pytest.mark.slow
def test_train_then_eval_reproduces_metrics(tmp_path):
    out = run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=2",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path / "run")
    assert RELATION_METRICS <= set(metrics)
    assert "val/scene_map" in out.stdout and "metric" in out.stdout  # the closing table
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt"))
    assert len(ckpts) == 1 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    run_module(
        "graphvision.eval", f"ckpt_path={ckpts[0]}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=ROOT
    )
    again = read_metrics(tmp_path / "eval")
    for name in RELATION_METRICS:
        assert again[name] == pytest.approx(metrics[name], abs=1e-5), name


@pytest.mark.slow
def test_eval_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.eval",
            f"ckpt_path={tmp_path / 'nope.ckpt'}",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "nope.ckpt does not exist" in proc.stderr


@pytest.mark.slow
def test_folder_classification_trains_and_reports_acc(tmp_path):
    root = make_image_folder(tmp_path / "folder", per_class=8)
    run_module(
        "graphvision.train",
        "experiment=folder_classification",
        f"data.root={root}",
        "trainer.max_epochs=2",
        "model.dim=32",
        "data.batch_size=8",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path / "run")
    assert 0.0 <= metrics["val/acc"] <= 1.0 and "val/loss" in metrics


@pytest.mark.slow
def test_coco_tiny_two_epochs(tmp_path, coco_tiny):
    run_module(
        "graphvision.train",
        "experiment=coco_relations",
        f"data.root={coco_tiny}",
        "trainer.max_epochs=2",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path / "run")
    assert RELATION_METRICS <= set(metrics)


@pytest.mark.slow
def test_bad_data_root_fails_before_training(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.train",
            "experiment=coco_relations",
            f"data.root={tmp_path / 'missing'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "missing does not exist" in proc.stderr and "expected COCO 2017 layout" in proc.stderr
    assert "Epoch" not in proc.stderr + proc.stdout
