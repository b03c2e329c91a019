"""``graphvision.predict`` and :class:`~graphvision.predictor.Predictor`: folders, annotations,
the user's boxes, objects found in photos, bad input; attributions of a trained model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT, is_png, run_module


@pytest.mark.slow
def test_region_attribution_is_finite_and_per_region(trained):
    from torch_geometric.data import Batch

    from graphvision.checkpoint import load_module
    from graphvision.data.cache import load_entry
    from graphvision.data.pipeline import to_graph

    module = load_module(trained / "run" / "checkpoints" / "last.ckpt").eval()
    entry = load_entry(next((trained / "data" / "cache").rglob("*.gvc")))
    graph = to_graph(entry)
    batch = Batch.from_data_list([graph], follow_batch=list(module.net.task.follow_batch))
    attribution = module.net.region_attribution(batch, category=0)
    assert attribution.shape == (graph.num_nodes,) and torch.isfinite(attribution).all()
    assert attribution.abs().sum() > 0


@pytest.mark.slow
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
        assert is_png(out / f"scene{i}.png")
        assert {"image", "size", "regions", "edges", "scene", "scene_all", "region_details"} <= set(
            record
        )
        assert len(record["scene_all"]) == 9
        assert all(0.0 <= d["probability"] <= 1.0 for d in record["scene_all"])
        assert len(record["region_details"]) == record["regions"] > 1
        for region in record["region_details"]:
            assert 0.0 <= region["attention"] <= 1.0 and len(region["top_classes"]) == 3
            assert all(0.0 <= c["probability"] <= 1.0 for c in region["top_classes"])


@pytest.mark.slow
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
    assert is_png(out / "000000.png")


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


@pytest.mark.slow
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
    assert is_png(out / f"{photo.stem}.png")
    with Image.open(out / f"{photo.stem}.png") as png:  # drawn at the photo's aspect ratio
        assert png.size[1] / png.size[0] == pytest.approx(5.5 * height / width / 12, rel=0.2)


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_refuses_bad_boxes(trained, coco_tiny, tmp_path):
    """A boxes file naming an unknown image, an unknown label or a malformed box, and a box
    outside the photo or of zero area: each stops with the file and the entry named (the
    first through the entry point, the rest through the functions it calls)."""
    from graphvision.predictor import given_objects, read_boxes

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


@pytest.mark.slow
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
