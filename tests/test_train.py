"""End to end through the real entry points (subprocesses, as a user runs them)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT, TINY_SYNTHETIC, make_image_folder, read_metrics, run_module


def average_precision(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """AP of one category by hand: the mean, over its positives, of the precision among the
    images ranked at or above each (0 when it has no positive, as torchmetrics counts it)."""
    if not positive.any():
        return 0.0
    order = torch.argsort(scores, descending=True)
    hits = positive[order].double()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


@torch.no_grad()
def recompute(run_dir) -> dict[str, float]:
    """The validation metrics of a run's best checkpoint, recomputed outside Lightning and
    torchmetrics: macro AP and micro accuracies by hand over the whole val loader."""

    from graphvision.checkpoint import load_module
    from graphvision.utils import build_datamodule

    (best,) = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    module = load_module(best).eval()
    dm = build_datamodule(module.hparams.data_config, module.net.task)
    dm.setup("validate")
    parts: dict[str, list] = {}
    for batch in dm.val_dataloader():
        out = module(batch)
        for key, value in out.items():
            parts.setdefault(key, []).append(value)
        for key in ("y", "obj_label", "rel_label", "label"):
            if key in batch:
                parts.setdefault(key, []).append(batch[key])
    got = {k: torch.cat(v) for k, v in parts.items()}
    if "class_logits" in got:
        return {"val/acc": float((got["class_logits"].argmax(1) == got["label"]).double().mean())}
    scores, y = got["scene_logits"], got["y"].bool()
    aps = [average_precision(scores[:, c], y[:, c]) for c in range(y.size(1))]
    return {
        "val/scene_map": sum(aps) / len(aps),
        "val/object_acc": float(
            (got["object_logits"].argmax(1) == got["obj_label"]).double().mean()
        ),
        "val/rel_acc": float(
            (got["relation_logits"].argmax(1) == got["rel_label"]).double().mean()
        ),
    }


def test_average_precision_by_hand_exact():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    # positives ranked 1st, 3rd and 5th: precisions 1/1, 2/3, 3/5
    assert average_precision(scores, torch.tensor([1, 0, 1, 0, 1]).bool()) == pytest.approx(
        (1 + 2 / 3 + 3 / 5) / 3
    )
    assert average_precision(scores, torch.zeros(5, dtype=torch.bool)) == 0.0


RELATION_METRICS = {
    "val/scene_map",
    "val/object_acc",
    "val/rel_acc",
    "val/rel_R@50",
    "val/rel_mR@50",
    "val/rel_R@20",
    "val/rel_R@100",
    "val/rel_ngR@50",
    "val/predcls_R@50",
    "val/sgdet_R@50",
    "val/sgdet_segm_AP50",
    "val/sgdet_obj_recall50",
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
    for name, value in recompute(tmp_path / "run").items():
        assert metrics[name] == pytest.approx(value, abs=1e-5), name
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt"))
    assert len(ckpts) == 1 and (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    run_module(
        "graphvision.eval", f"ckpt_path={ckpts[0]}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=ROOT
    )
    again = read_metrics(tmp_path / "eval")
    for name in RELATION_METRICS:
        assert again[name] == pytest.approx(metrics[name], abs=1e-5), name
    # resuming from last.ckpt continues at the next epoch and step (24 images / 8 = 3 steps)
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 6)
    out = run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    resumed = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (2, 9)
    assert "Restored all states from the checkpoint" in out.stdout + out.stderr


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
    assert proc.returncode == 1 and "nope.ckpt does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


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
    assert metrics["val/acc"] == pytest.approx(recompute(tmp_path / "run")["val/acc"], abs=1e-6)
    assert metrics["val/loss"] == pytest.approx(metrics["val/loss_classification"], abs=1e-6)
    image = sorted((root / "val" / "red_circle").glob("*.png"))[0]
    run_module(
        "graphvision.predict",
        f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}",
        f"image={image}",
        f"out_dir={tmp_path / 'pred'}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=ROOT,
    )
    record = json.loads((tmp_path / "pred" / f"{image.stem}.json").read_text())
    assert sorted(c["class"] for c in record["classes"]) == sorted(
        p.name for p in (root / "train").iterdir()
    )
    assert sum(c["probability"] for c in record["classes"]) == pytest.approx(1.0, abs=1e-5)
    assert len(record["region_attention"]) == record["regions"]
    assert (tmp_path / "pred" / f"{image.stem}.png").stat().st_size > 1000


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
    for name, value in recompute(tmp_path / "run").items():
        assert metrics[name] == pytest.approx(value, abs=1e-5), name


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
    assert "Epoch" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process_evaluation(tmp_path):
    """``trainer=ddp trainer.accelerator=cpu trainer.devices=2`` trains (sync_batchnorm is
    turned off on the CPU), pre-processes once, writes one metrics.json, and its validation
    metrics are averaged over both ranks: they equal a one-process evaluation of the same
    checkpoint (one image per batch, so that a batch's mean is an image's value)."""
    out = run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "data.batch_size=1",
        "data.num_train=8",
        "data.num_val=6",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert "sync_batchnorm=true needs GPUs" in out.stdout + out.stderr
    assert len(list((tmp_path / "run").rglob("metrics.json"))) == 1
    ddp = read_metrics(tmp_path / "run")
    entries = list((tmp_path / "data" / "cache").rglob("*.gvc"))
    assert len(entries) == 8 + 6  # every image pre-processed once, by one process
    run_module(
        "graphvision.eval",
        f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=ROOT,
    )
    single = read_metrics(tmp_path / "eval")
    for name in (
        "val/loss",
        "val/loss_relations",
        "val/scene_map",
        "val/object_acc",
        "val/rel_R@50",
        "val/sgdet_segm_AP50",
    ):
        assert ddp[name] == pytest.approx(single[name], abs=1e-4), name


def test_max_epochs_below_one_is_refused(tmp_path):
    from graphvision.train import train
    from tests.conftest import compose_cfg

    cfg = compose_cfg(overrides=["trainer.max_epochs=0", *TINY_SYNTHETIC], tmp=tmp_path)
    with pytest.raises(
        ValueError, match=re.escape("trainer.max_epochs=0: must be an integer >= 1")
    ):
        train(cfg)
