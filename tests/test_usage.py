"""Using a trained model: attention, attributions, predict, eval breakdowns, sweeps, report,
the notebook."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import COCO_TINY, ROOT, TINY_SYNTHETIC, run_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


#: one epoch on a few scenes, for the sweep tests
TINY_SWEEP = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "data.num_train=16", "data.num_val=8"]


def _torch_layer(layer, dim: int, heads: int, hidden: int) -> torch.nn.TransformerEncoderLayer:
    """PyTorch's own pre-norm encoder layer carrying the weights of our ``EncoderLayer``."""
    ref = torch.nn.TransformerEncoderLayer(
        dim, heads, hidden, 0.0, activation="gelu", batch_first=True, norm_first=True
    )
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(layer.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(layer.attn.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(layer.attn.proj.state_dict())
        ref.norm1.load_state_dict(layer.norm1.state_dict())
        ref.norm2.load_state_dict(layer.norm2.state_dict())
        ref.linear1.load_state_dict(layer.mlp[0].state_dict())
        ref.linear2.load_state_dict(layer.mlp[3].state_dict())
    return ref


def test_encoder_layer_equals_torch_transformer_layer():
    """Oracle: our SDPA encoder layer computes nn.TransformerEncoderLayer(norm_first=True)
    with the same weights, on padded sequences, forward and backward."""
    from graphvision.nn.sequence import EncoderLayer

    torch.manual_seed(0)
    layer = EncoderLayer(16, heads=4, hidden=32)
    ref = _torch_layer(layer, 16, 4, 32)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    x = torch.randn(3, 6, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x, keep)
    expected = ref(x_ref, src_key_padding_mask=~keep)
    torch.testing.assert_close(out[keep], expected[keep], rtol=1e-5, atol=1e-5)
    out[keep].square().sum().backward()
    expected[keep].square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        layer.attn.qkv.weight.grad, ref.self_attn.in_proj_weight.grad, rtol=1e-4, atol=1e-5
    )


def test_cls_attention_comes_from_the_encoder_itself():
    """Oracle: the CLS attention the sequence stage returns equals nn.MultiheadAttention's
    weights for the same projections on the same pre-normed sequence; the outputs are those
    of the plain forward; and it is a distribution over CLS + regions."""
    from graphvision.nn.sequence import TransformerSequence, raster_order, sincos_2d, to_sequence

    torch.manual_seed(0)
    seq = TransformerSequence(16, depth=1, heads=2).eval()
    h, pos = torch.randn(7, 16), torch.rand(7, 2)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        cls, tokens, attention = seq(h, pos, batch, return_attention=True)
        cls2, tokens2, none = seq(h, pos, batch)
        assert none is None
        torch.testing.assert_close(cls, cls2)
        torch.testing.assert_close(tokens, tokens2)
        assert attention.shape == (1, 7)
        # independently: PyTorch's attention on layer 0's pre-normed sequence, CLS row
        x = h + seq.pos_proj(sincos_2d(pos, 16))
        dense, mask, _ = to_sequence(x, pos, batch, seq.rows)
        perm = raster_order(pos, batch, seq.rows)
        s = torch.cat([seq.cls.expand(2, -1, -1), dense], 1)
        pad = torch.cat([mask.new_zeros(2, 1), ~mask], 1)
        layer = seq.layers[0]
        mha = _torch_layer(layer, 16, 2, 32).self_attn.eval()
        s = layer.norm1(s)
        _, w = mha(s, s, s, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
    expected = torch.empty(7)
    expected[perm] = w[:, 0, 1:][mask]
    torch.testing.assert_close(attention[0], expected)
    totals = torch.zeros(2).index_add_(0, batch, attention[0])
    assert (totals <= 1 + 1e-6).all() and (attention >= 0).all()


@pytest.fixture(scope="module")
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


def test_region_attribution_is_finite_and_per_region(trained):
    from torch_geometric.data import Batch

    from graphvision.checkpoint import load_module
    from graphvision.data.cache import load_entry, to_graph

    module = load_module(trained / "run" / "checkpoints" / "last.ckpt").eval()
    entry = load_entry(next((trained / "data" / "cache").rglob("*.gvc")))
    graph = to_graph(entry)
    batch = Batch.from_data_list([graph], follow_batch=list(module.net.task.follow_batch))
    attribution = module.net.region_attribution(batch, category=0)
    assert attribution.shape == (graph.num_nodes,) and torch.isfinite(attribution).all()
    assert attribution.abs().sum() > 0


def test_predict_on_a_folder_of_three_images(trained, tmp_path):
    from graphvision.data.synthetic import render_scene

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        img, _ = render_scene(np.random.default_rng([99, i]))
        Image.fromarray(img).save(folder / f"scene{i}.png")
    out = tmp_path / "pred"
    run_module(
        "graphvision.predict",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"image={folder}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=ROOT,
    )
    for i in range(3):
        record = json.loads((out / f"scene{i}.json").read_text())
        assert _is_png(out / f"scene{i}.png")
        assert {"image", "size", "regions", "edges", "scene", "scene_all", "region_details"} <= set(
            record
        )
        assert len(record["scene_all"]) == 9
        assert all(0.0 <= d["probability"] <= 1.0 for d in record["scene_all"])
        assert len(record["region_details"]) == record["regions"] > 1
        for region in record["region_details"]:
            assert 0.0 <= region["attention"] <= 1.0 and len(region["top_classes"]) == 3
            assert all(0.0 <= c["probability"] <= 1.0 for c in region["top_classes"])


def test_predict_with_annotations_adds_objects_and_relations(trained, tmp_path):
    root = next((trained / "data" / "synthetic").iterdir())
    image = root / "val" / "000000.png"
    out = tmp_path / "pred"
    run_module(
        "graphvision.predict",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"image={image}",
        f"annotations={root / 'annotations/instances_val.json'}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=ROOT,
    )
    record = json.loads((out / "000000.json").read_text())
    m = len(record["objects"])
    assert record["mode"] == "sgcls" and m >= 2 and len(record["relations"]) == m * (m - 1)
    assert all("true" in o and 0.0 <= o["score"] <= 1.0 for o in record["objects"])
    for r in record["relations"]:
        assert "true" in r and 0.0 <= r["score"] <= 1.0
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert [r["score"] for r in record["relations"]] == sorted(
        (r["score"] for r in record["relations"]), reverse=True
    )
    assert _is_png(out / "000000.png")


def _predict(trained, tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.predict",
            f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
            *args,
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_predict_finds_objects_in_a_photo_without_annotations(trained, coco_tiny, tmp_path):
    """sgdet on a real COCO photo: the JSON states the photo's size beside the working
    size; every object's mask decodes (pycocotools) to the photo's size and its box lies
    inside the photo and equals the mask's box; relations refer to listed objects."""
    from pycocotools import mask as mask_utils

    photo = sorted((coco_tiny / "val2017").glob("*.jpg"))[0]
    width, height = Image.open(photo).size
    out = tmp_path / "pred"
    proc = _predict(trained, tmp_path, f"image={photo}", f"out_dir={out}", "object_threshold=0.0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / f"{photo.stem}.json").read_text())
    assert record["mode"] == "sgdet"
    assert record["size"] == [width, height] and record["working_size"] == [128, 128]
    assert record["objects"], "the model found no object"
    ids = {o["id"] for o in record["objects"]}
    for o in record["objects"]:
        mask = mask_utils.decode({**o["mask"], "counts": o["mask"]["counts"].encode()})
        assert mask.shape == (height, width) and mask.any()
        x, y, w, h = o["box"]
        assert 0 <= x and 0 <= y and x + w <= width + 0.5 and y + h <= height + 0.5
        ys, xs = np.nonzero(mask)
        assert [x, y, x + w, y + h] == pytest.approx(
            [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=0.6
        )
        assert len(o["top"]) == 3 and o["label"] == o["top"][0]["category"]
    scores = [o["score"] for o in record["objects"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["subject"] in ids and r["object"] in ids for r in record["relations"])
    assert len(record["relations"]) == min(20, len(ids) * (len(ids) - 1))
    assert _is_png(out / f"{photo.stem}.png")
    with Image.open(out / f"{photo.stem}.png") as png:  # drawn at the photo's aspect ratio
        assert png.size[1] / png.size[0] == pytest.approx(5.5 * height / width / 12, rel=0.2)


def test_predict_on_your_own_boxes(trained, coco_tiny, tmp_path):
    """boxes= with two boxes: exactly 2 objects and 2 relations; with categories named,
    predcls (the labels are the given ones, score 1)."""
    photo = sorted((coco_tiny / "val2017").glob("*.jpg"))[0]
    boxes = tmp_path / "boxes.json"
    for named, mode in [(False, "sgcls"), (True, "predcls")]:
        objects = [{"bbox": [10, 20, 150, 120]}, {"bbox": [200, 100, 90, 200]}]
        if named:
            objects[0]["category"], objects[1]["category"] = "red circle", "blue square"
        boxes.write_text(json.dumps({photo.name: objects}))
        out = tmp_path / mode
        proc = _predict(trained, tmp_path, f"image={photo}", f"boxes={boxes}", f"out_dir={out}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        record = json.loads((out / f"{photo.stem}.json").read_text())
        assert record["mode"] == mode
        assert len(record["objects"]) == 2 and len(record["relations"]) == 2
        by_id = {o["id"]: o for o in record["objects"]}
        assert by_id[0]["box"] == [10, 20, 150, 120] and by_id[1]["box"] == [200, 100, 90, 200]
        if named:
            assert by_id[0]["label"] == "red circle" and by_id[1]["score"] == 1.0
        assert {(r["subject"], r["object"]) for r in record["relations"]} == {(0, 1), (1, 0)}


def test_predict_refuses_bad_boxes(trained, coco_tiny, tmp_path):
    """A boxes file naming an unknown image, an unknown label or a malformed box, and a box
    outside the photo or of zero area: each stops with the file and the entry named (the
    first through the entry point, the rest through the functions it calls)."""
    from graphvision.inference import given_objects, read_boxes

    photo = sorted((coco_tiny / "val2017").glob("*.jpg"))[0]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"nope.jpg": [{"bbox": [0, 0, 10, 10]}]}))
    proc = _predict(trained, tmp_path, f"image={photo}", f"boxes={boxes}")
    assert proc.returncode != 0 and f"boxes={boxes}: entry 'nope.jpg' names no image" in proc.stderr
    categories = ["red circle", "blue square"]
    for content, message in [
        (
            {photo.name: [{"bbox": [0, 0, 10, 10], "category": "unicorn"}]},
            "object 0: unknown category 'unicorn'",
        ),
        ({photo.name: [{"bbox": [0, 0, 10]}]}, "object 0: 'bbox' must be [x, y, width, height]"),
        ({photo.name: []}, "must be a non-empty list of objects"),
    ]:
        boxes.write_text(json.dumps(content))
        with pytest.raises(ValueError) as err:
            read_boxes(boxes, [photo], categories)
        assert str(boxes) in str(err.value) and photo.name in str(err.value)
        assert message in str(err.value)
    graph = type("Graph", (), {})()  # the checks come before the graph is touched
    for box, message in [
        ([5, 5, 0, 10], "object 1: box [5.0, 5.0, 0.0, 10.0] has no area"),
        (
            [5000, 5, 10, 10],
            "object 1: box [5000.0, 5.0, 10.0, 10.0] has no area inside the 640x480 photo",
        ),
    ]:
        given = {"boxes": torch.tensor([[5.0, 5, 10, 10], box]), "labels": None}
        with pytest.raises(ValueError, match=re.escape(message)):
            given_objects(graph, given, photo, (640, 480))


def test_predict_errors(trained, tmp_path):
    for args, message in [
        (
            [f"ckpt_path={tmp_path / 'missing.ckpt'}", f"image={tmp_path}"],
            "missing.ckpt does not exist",
        ),
        (
            [
                f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
                f"image={tmp_path / 'nope.png'}",
            ],
            "nope.png does not exist",
        ),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "graphvision.predict", *args, f"hydra.run.dir={tmp_path}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "broken.png").write_bytes(b"not a png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.predict",
            f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
            f"image={tmp_path / 'broken.png'}",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        proc.returncode == 1 and "cannot read image" in proc.stderr and "broken.png" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_eval_writes_breakdowns(trained, tmp_path):
    run_module(
        "graphvision.eval",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
    )
    table = (tmp_path / "per_category_ap.md").read_text().splitlines()
    assert table[0] == "| category | AP | positives |" and len(table) == 2 + 9
    assert _is_png(tmp_path / "relation_confusion.png")
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
    from types import SimpleNamespace

    from graphvision.eval import evaluation_modes

    task = SimpleNamespace(modes=("predcls", "sgcls", "sgdet"))
    assert evaluation_modes(None, task) == task.modes and evaluation_modes("sgdet", task) == (
        "sgdet",
    )
    with pytest.raises(ValueError, match=re.escape("mode=['sgfoo']: choose among")):
        evaluation_modes(["sgfoo"], task)
    assert evaluation_modes(None, SimpleNamespace(modes=())) == ()


@pytest.mark.slow
def test_multirun_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    run_module(
        "graphvision.train",
        "-m",
        "model/gnn=gcn,gine",
        "seed=1,2",
        *TINY_SWEEP,
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").is_file()) == [
        "0",
        "1",
        "2",
        "3",
    ]
    # the first job pre-processed the images, the others found them in the shared cache
    summaries = [json.loads((sweep / i / "summary.json").read_text()) for i in "0123"]
    assert summaries[0]["images_prepared"] > 0 and summaries[0]["prepare_seconds"] > 0
    assert [s["images_prepared"] for s in summaries[1:]] == [0, 0, 0]
    proc = run_module("graphvision.report", str(sweep), cwd=tmp_path)
    assert "report.md" in proc.stdout
    gcn_row = next(
        line
        for line in (sweep / "report.md").read_text().splitlines()
        if line.startswith("| `model/gnn=gcn`")
    )
    built = 1000.0 * summaries[0]["prepare_seconds"] / summaries[0]["images_prepared"]
    assert f"| {built:.1f} |" in gcn_row  # prepare ms/img, from the job that built
    # the learning curve: epoch 1's val/scene_map, mean of the two gcn jobs' CSV logs
    first = []
    for job in "01":
        with (sweep / job / "csv" / "metrics.csv").open() as f:
            first += [
                float(r["val/scene_map"])
                for r in csv.DictReader(f)
                if r["val/scene_map"] and r["epoch"] == "0"
            ]
    assert len(first) == 2
    curve_rows = (sweep / "report.md").read_text().split("## Learning curve")[1].splitlines()
    assert f"| `model/gnn=gcn` | {sum(first) / 2:.4f} |" in curve_rows
    assert _is_png(sweep / "curves.png")
    table = (sweep / "report.md").read_text().split("## Learning curve")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert all(" ± " in row for row in rows)  # two seeds per configuration
    assert {"`model/gnn=gcn`", "`model/gnn=gine`"} == {
        row.split(" | ")[0].strip("| ") for row in rows
    }
    assert _is_png(sweep / "report.png")
    # the same runs in two folders (as SEEDS=1 and SEEDS=2 run at different times): one
    # report over both holds the same rows
    for folder, jobs in (("first", "02"), ("second", "13")):  # seed 1 | seed 2 of each
        for job in jobs:
            shutil.copytree(sweep / job, tmp_path / folder / job)
    run_module(
        "graphvision.report", str(tmp_path / "first"), str(tmp_path / "second"), cwd=tmp_path
    )
    pooled = (tmp_path / "first" / "report.md").read_text().split("## Learning curve")[0]
    assert [line for line in pooled.splitlines() if line.startswith("| `")] == rows
    assert "4 runs, 2 configurations" in pooled


@pytest.mark.slow
def test_optuna_sweep_and_report(tmp_path):
    sweep = tmp_path / "optuna"
    run_module(
        "graphvision.train",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *TINY_SWEEP,
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert (sweep / "optimization_results.yaml").is_file()
    proc = run_module("graphvision.report", str(sweep), "--metric", "val/scene_map", cwd=tmp_path)
    assert "Optuna trials (3)" in proc.stdout
    trial_rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| ") and "model.lr=" in line
    ]
    assert len(trial_rows) >= 3


@pytest.mark.slow
def test_notebook_runs_and_draws(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "experiments" / "region_graphs.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stripped in git
    monkeypatch.setenv("GRAPHVISION_NB_OUT", str(tmp_path))
    monkeypatch.setenv("GRAPHVISION_NB_FAST", "1")
    if COCO_TINY.is_dir():
        monkeypatch.setenv("GRAPHVISION_COCO_TINY", str(COCO_TINY))
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "experiments")}},
    ).execute()
    # the README shows three, drawn by the notebook under these names
    readme = (ROOT / "README.md").read_text()
    for name in ("region_graphs_skimage.png", "prediction_attention.png", "sgdet_photos.png"):
        assert (
            f"experiments/figures/{name}" in readme
            and (ROOT / "experiments/figures" / name).is_file()
        )
    for name in (
        "region_graphs_skimage.png",
        "prediction_attention.png",
        "predictions.png",
        "scene_graph.png",
        "sgdet_photos.png",
    ):
        assert _is_png(tmp_path / name), name
    if COCO_TINY.is_dir():
        assert _is_png(tmp_path / "coco_region_graph.png")


def test_to_networkx_exact():
    from torch_geometric.data import Data

    from graphvision.viz import scene_graph_networkx, to_networkx

    x = torch.arange(3 * 13, dtype=torch.float).view(3, 13)
    data = Data(
        x=x,
        pos=torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.9, 0.8]]),
        edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
        edge_attr=torch.arange(20.0).view(4, 5),
    )
    g = to_networkx(data)
    assert sorted(g.edges()) == [(0, 1), (1, 2)] and g.number_of_nodes() == 3
    assert g.nodes[2]["pos"] == pytest.approx([0.9, 0.8]) and g.nodes[1]["mean_r"] == 13.0
    assert (
        g.edges[1, 2]["edge_attr"] == [10.0, 11.0, 12.0, 13.0, 14.0]
        and g.edges[1, 2]["colour_diff"] == 14.0
    )
    sg = scene_graph_networkx(["cat", "mat"], torch.tensor([[0, 1], [1, 0]]), ["above", "below"])
    assert sg.nodes[0]["label"] == "cat" and sorted(
        d["relation"] for _, _, d in sg.edges(data=True)
    ) == ["above", "below"]


def _as_written_before_tasks(checkpoint: dict) -> dict:
    """A checkpoint as graphvision wrote it before tasks were objects, rebuilt by hand from
    that layout: the task named in ``info``, predicates called ``relations``, the heads'
    settings and all loss weights on the module, the heads and ``seen`` on the network."""
    h = checkpoint["hyper_parameters"]
    info = h["info"]
    old_hparams = {
        "info": {
            "task": "relations",
            "categories": info["categories"],
            "relations": info["predicates"],
            "classes": [],
        },
        "backbone": h["backbone"],
        "gnn": {**h["gnn"], "heads": 4},
        "sequence": h["sequence"],
        "dim": h["dim"],
        "dropout": h["dropout"],
        "shape_grid": h["task"]["shape_grid"],
        "zero_shot": False,
        "text_encoder": None,
        "loss_weights": {
            "scene": 1.0,
            "objects": 1.0,
            "relations": 1.0,
            "regions": 1.0,
            "classification": 1.0,
            "balance": 0.01,
        },
        "lr": h["lr"],
        "weight_decay": h["weight_decay"],
        "warmup_fraction": h["warmup_fraction"],
        "recall_k": h["task"]["recall_k"],
        "data_config": h["data_config"],
    }
    state = {}
    for key, value in checkpoint["state_dict"].items():
        key = "seen" if key == "net.task.seen" else key.replace("net.task.", "net.", 1)
        state[key] = value
    old = {**checkpoint, "hyper_parameters": old_hparams, "state_dict": state}
    del old["graphvision_format"]
    return old


def _as_format_4(checkpoint: dict) -> dict:
    """A checkpoint as graphvision wrote it before ``model.descriptors`` (format 4)."""
    h = {k: v for k, v in checkpoint["hyper_parameters"].items() if k != "descriptors"}
    return {**checkpoint, "hyper_parameters": h, "graphvision_format": 4}


def _as_format_3(checkpoint: dict) -> dict:
    """A checkpoint as graphvision wrote it before ``model.net`` (format 3): no ``net``, one
    backbone layer named by ``return_node``."""
    h = {k: v for k, v in _as_format_4(checkpoint)["hyper_parameters"].items() if k != "net"}
    backbone = {k: v for k, v in h["backbone"].items() if k != "return_nodes"}
    backbone["return_node"] = h["backbone"]["return_nodes"][0]
    return {**checkpoint, "hyper_parameters": {**h, "backbone": backbone}, "graphvision_format": 3}


def _as_format_2(checkpoint: dict) -> dict:
    """A checkpoint as graphvision wrote it before objects were found in the region graph
    (format 2): no grouping head, no record of the training triplets, no ``sgdet`` settings
    or ``grouping`` loss weight, one recall K."""
    h = _as_format_3(checkpoint)["hyper_parameters"]
    task = {k: v for k, v in h["task"].items() if k != "sgdet"}
    task["loss_weights"] = {k: v for k, v in task["loss_weights"].items() if k != "grouping"}
    task["recall_k"] = 50
    state = {
        k: v
        for k, v in checkpoint["state_dict"].items()
        if not k.startswith("net.task.grouping_head.") and k != "net.task.train_triplets"
    }
    return {
        **checkpoint,
        "hyper_parameters": {**h, "task": task},
        "state_dict": state,
        "graphvision_format": 2,
    }


#: metrics that depend on the grouping head, which older checkpoints lack (they evaluate
#: sgdet with grouping=class)
GROUPING_METRICS = ("val/sgdet_", "val/grouping_acc", "val/loss")


def test_checkpoints_of_older_formats_load_evaluate_and_resume(trained, tmp_path):
    """Checkpoints written before tasks were objects (format 1), before the grouping head
    (format 2), before ``model.net`` (format 3) and before ``model.descriptors`` (format 4),
    rebuilt by hand from the current one. Format 3 loads as ``net: graph`` and format 4 with
    every descriptor, both with identical outputs; a format-4 ``gated_gcn`` is refused. Formats 1 and 2 load with
    grouping=class and a grouping loss weight of 0, every head they had gives exactly the
    current outputs, eval gives the same metrics (those not depending on the grouping head;
    the training triplets are read from the data), and training resumes from them."""
    from torch_geometric.data import Batch

    from graphvision.checkpoint import load_module
    from graphvision.data.cache import load_entry, to_graph
    from graphvision.tasks.legacy import CHECKPOINT_FORMAT, SGDET_FOR_OLD_MODELS

    new_path = trained / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(new_path, weights_only=True)
    assert checkpoint["graphvision_format"] == CHECKPOINT_FORMAT == 5
    torch.save(_as_format_4(checkpoint), tmp_path / "format4.ckpt")
    torch.save(_as_format_3(checkpoint), tmp_path / "format3.ckpt")
    format_2 = _as_format_2(checkpoint)
    paths = {"format_2": tmp_path / "format2.ckpt", "format_1": tmp_path / "format1.ckpt"}
    torch.save(format_2, paths["format_2"])
    torch.save(_as_written_before_tasks(format_2), paths["format_1"])
    new = load_module(new_path).eval()
    graph = to_graph(load_entry(next((trained / "data" / "cache").rglob("*.gvc"))))
    batch = Batch.from_data_list([graph], follow_batch=list(new.net.task.follow_batch))
    format_3 = load_module(tmp_path / "format3.ckpt").eval()  # before model.net existed
    assert format_3.hparams.net == "graph"
    assert format_3.hparams.backbone["return_nodes"] == ["layer2"]
    format_4 = load_module(tmp_path / "format4.ckpt").eval()  # before model.descriptors
    assert format_4.hparams.descriptors == "all"
    with torch.no_grad():
        expected = new(batch)
        for name, old in (("format 3", format_3), ("format 4", format_4)):
            got = old(batch)
            assert all(torch.equal(got[k], expected[k]) for k in expected), name
    gated = _as_format_4(checkpoint)
    gated["hyper_parameters"] = {**gated["hyper_parameters"], "gnn": {"layer": "gated_gcn"}}
    torch.save(gated, tmp_path / "gated4.ckpt")
    with pytest.raises(ValueError, match="ResGatedGraphConv.*train it again"):
        load_module(tmp_path / "gated4.ckpt")
    metrics = {}
    run_module(
        "graphvision.eval", f"ckpt_path={new_path}", f"hydra.run.dir={tmp_path / 'new'}", cwd=ROOT
    )
    metrics["new"] = json.loads((tmp_path / "new" / "metrics.json").read_text())
    for name, path in paths.items():
        old = load_module(path).eval()
        assert old.hparams.task["sgdet"] == SGDET_FOR_OLD_MODELS
        assert old.net.task.grouping == "class" and old.net.task.loss_weights["grouping"] == 0.0
        assert old.hparams.info == new.hparams.info
        with torch.no_grad():
            got, expected = old(batch), new(batch)
        for key in ("scene_logits", "region_logits", "object_logits", "relation_logits"):
            assert torch.equal(got[key], expected[key]), (name, key)
        run_module(
            "graphvision.eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / name}", cwd=ROOT
        )
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        shared = {k for k in metrics[name] if not k.startswith(GROUPING_METRICS)}
        assert {"val/scene_map", "val/rel_R@50", "val/rel_zR@50", "val/predcls_mR@50"} <= shared
        assert "val/sgdet_segm_AP50" in metrics[name]
        for key in shared:
            assert metrics[name][key] == pytest.approx(metrics["new"][key], abs=1e-6), (name, key)
    run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=2",
        f"ckpt_path={paths['format_1']}",
        f"paths.data_dir={trained / 'data'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    resumed = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["graphvision_format"] == CHECKPOINT_FORMAT


def test_bench_predict_json(trained, coco_tiny, tmp_path):
    """``bench predict`` times each part of predict on photos with the model loaded once;
    checked: the structure and the arithmetic, never a speed."""
    from graphvision import bench

    out = tmp_path / "predict.json"
    result = bench.main(
        [
            "predict",
            "--out",
            str(out),
            "--ckpt",
            str(trained / "run/checkpoints/last.ckpt"),
            "--images",
            str(coco_tiny / "val2017"),
            "--limit",
            "3",
        ]
    )
    assert json.loads(out.read_text()) == result
    assert result["images"] == 3 and result["working_size"] == [128, 128]
    parts = result["ms_per_image"]
    assert set(parts) == {"decode", "regions", "network", "grouping", "record", "total"}
    assert all(parts[k]["mean_ms"] > 0 for k in ("decode", "regions", "network", "total"))
    assert (
        sum(parts[k]["mean_ms"] for k in parts if k != "total") <= parts["total"]["mean_ms"] + 0.1
    )
    ratio = parts["grouping"]["mean_ms"] / parts["network"]["mean_ms"]
    assert result["grouping_over_network"] == pytest.approx(ratio, abs=2e-3)


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    """eval (and predict, through the same loader) on a zero-byte file, a text file or a
    tensor file: a clear error naming the file and what a checkpoint is, not the unpickler's."""
    from graphvision.checkpoint import load_module

    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensor.ckpt")
    for name in ("empty.ckpt", "notes.ckpt", "tensor.ckpt"):
        with pytest.raises(
            ValueError, match=rf"{name} is not a graphvision checkpoint.*graphvision.train"
        ):
            load_module(tmp_path / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.eval",
            f"ckpt_path={tmp_path / 'empty.ckpt'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "empty.ckpt is not a graphvision checkpoint" in proc.stderr
